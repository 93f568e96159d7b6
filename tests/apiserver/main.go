// A real Kubernetes API server for cloudmigrate's tests: the upstream apiextensions-apiserver
// (CustomResourceDefinitions and custom resources, stored in etcd), wrapped so that it runs on
// its own and works with kubectl and kube-rs, plus the built-in objects that cloudmigrate uses
// (core.go). Built by build.sh from Debian's Go source packages.
//
// The same binary's `helpers` command plays the cluster's other parts for the tests: the Job
// controller with the kubelet, and the garbage collector (helpers.go).
//
// What differs from the upstream main:
//   - the delegated authentication/authorization kubeconfigs are optional: clients authenticate
//     with a certificate of the group system:masters, which is always allowed, or of a group
//     that forbids one verb on one resource (forbid.go), a stand-in for RBAC refusals;
//   - the built-in objects are served from the generic registry store, without kube-apiserver's
//     admission plugins: nothing checks that a namespace exists, and no quota applies;
//   - no core API exists for the CRD server's own machinery, so the admission plugins and API priority and fairness that need one
//     are off, the shared informer factory is empty and services resolve the default way;
//   - OpenAPI v2 is served (kubectl apply needs it);
//   - root discovery (/apis) is on and lists every established CRD group.
package main

import (
	"os"
	"sort"

	"github.com/spf13/cobra"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"
)

func main() {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Authorization.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.CoreAPI = nil
	o.RecommendedOptions.Admission = nil
	o.RecommendedOptions.Features.EnablePriorityAndFairness = false

	cmd := &cobra.Command{
		Use:   "cloudmigrate-test-apiserver",
		Short: "A Kubernetes API server for custom resources and the built-in objects cloudmigrate uses, for tests",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error { return run(c, o) },
	}
	cmd.SetContext(genericapiserver.SetupSignalContext())
	o.AddFlags(cmd.Flags())
	cmd.AddCommand(helpersCommand())
	os.Exit(cli.Run(cmd))
}

func run(c *cobra.Command, o *options.CustomResourceDefinitionsServerOptions) error {
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}

	cfg := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRunOptions.ApplyTo(&cfg.Config); err != nil {
		return err
	}
	defs := withServedDefinitions(openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions))
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	if err := o.RecommendedOptions.ApplyTo(cfg); err != nil {
		return err
	}
	cfg.Authorization.Authorizer = union.New(forbidRules{}, cfg.Authorization.Authorizer)
	if err := o.APIEnablement.ApplyTo(&cfg.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return err
	}
	// No admission plugin applies without a core API: an empty chain admits everything.
	cfg.AdmissionControl = admission.NewChainHandler()
	loopback, err := kubernetes.NewForConfig(cfg.LoopbackClientConfig)
	if err != nil {
		return err
	}
	// Nothing ever asks this factory for an informer, so starting it starts nothing.
	cfg.SharedInformerFactory = informers.NewSharedInformerFactory(loopback, 0)

	config := &apiserver.Config{
		GenericConfig: cfg,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*o.RecommendedOptions.Etcd, cfg.ResourceTransformers, cfg.StorageObjectCountTracker),
			ServiceResolver:      webhook.NewDefaultServiceResolver(),
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, cfg.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}
	completed := config.Complete()
	// Complete() turns discovery off, expecting kube-apiserver's aggregator in front of it.
	completed.GenericConfig.EnableDiscovery = true
	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	listCRDGroups(server)

	// The built-in objects: their own codec, the same etcd.
	etcd := *o.RecommendedOptions.Etcd
	etcd.StorageConfig.Codec = coreCodecs.LegacyCodec(corev1.SchemeGroupVersion, batchv1.SchemeGroupVersion, coordinationv1.SchemeGroupVersion)
	etcd.StorageConfig.StorageObjectCountTracker = cfg.StorageObjectCountTracker
	etcd.WatchCacheSizes = nil
	restOptions := etcd.CreateRESTOptionsGetter(&genericoptions.SimpleStorageFactory{StorageConfig: etcd.StorageConfig}, cfg.ResourceTransformers)
	if err := installCoreAPIs(server.GenericAPIServer, restOptions); err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
}

// listCRDGroups keeps the legacy /apis group list in step with the established CRDs. (The
// aggregated discovery document already follows them.)
func listCRDGroups(server *apiserver.CustomResourceDefinitions) {
	informer := server.Informers.Apiextensions().V1().CustomResourceDefinitions()
	groups := server.GenericAPIServer.DiscoveryGroupManager
	listed := map[string]bool{}
	sync := func() {
		crds, err := informer.Lister().List(labels.Everything())
		if err != nil {
			klog.Errorf("listing CRDs for discovery: %v", err)
			return
		}
		versions := map[string]map[string]bool{}
		for _, crd := range crds {
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					if versions[crd.Spec.Group] == nil {
						versions[crd.Spec.Group] = map[string]bool{}
					}
					versions[crd.Spec.Group][v.Name] = true
				}
			}
		}
		for group, vs := range versions {
			names := make([]string, 0, len(vs))
			for v := range vs {
				names = append(names, v)
			}
			sort.Slice(names, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0
			})
			apiGroup := metav1.APIGroup{Name: group}
			for _, v := range names {
				apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v, Version: v})
			}
			apiGroup.PreferredVersion = apiGroup.Versions[0]
			groups.AddGroup(apiGroup)
			listed[group] = true
		}
		for group := range listed {
			if versions[group] == nil {
				groups.RemoveGroup(group)
				delete(listed, group)
			}
		}
	}
	var _ discovery.GroupManager = groups
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { sync() },
		UpdateFunc: func(any, any) { sync() },
		DeleteFunc: func(any) { sync() },
	})
	if err != nil {
		klog.Errorf("watching CRDs for discovery: %v", err)
	}
}
