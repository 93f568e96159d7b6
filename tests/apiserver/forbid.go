// A stand-in for RBAC refusals: a client whose certificate is in the group
// "cloudmigrate-test:forbid:VERB:RESOURCE" may do everything but VERB on RESOURCE, so that a
// test can see how cloudmigrate handles a request that a real cluster's RBAC forbids. Every
// other client is left to the server's own authorizer (system:masters may do everything).
package main

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apiserver/pkg/authorization/authorizer"
)

const forbidGroup = "cloudmigrate-test:forbid:"

type forbidRules struct{}

func (forbidRules) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	u := a.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, "", nil
	}
	ruled := false
	for _, g := range u.GetGroups() {
		rule, ok := strings.CutPrefix(g, forbidGroup)
		if !ok {
			continue
		}
		ruled = true
		verb, resource, _ := strings.Cut(rule, ":")
		if a.IsResourceRequest() && a.GetVerb() == verb && a.GetResource() == resource {
			return authorizer.DecisionDeny, fmt.Sprintf("the group %s forbids it", g), nil
		}
	}
	if ruled {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}
