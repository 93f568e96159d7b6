// The columns `kubectl get` shows for Jobs and Events, close to kube-apiserver's.
package main

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// table turns objects of one kind into the rows of `kubectl get`.
type table struct {
	columns []metav1.TableColumnDefinition
	row     func(obj runtime.Object) []any
}

func (t *table) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	out := &metav1.Table{ColumnDefinitions: t.columns}
	add := func(o runtime.Object) {
		out.Rows = append(out.Rows, metav1.TableRow{Cells: t.row(o), Object: runtime.RawExtension{Object: o}})
	}
	if meta.IsListType(obj) {
		if err := meta.EachListItem(obj, func(o runtime.Object) error { add(o); return nil }); err != nil {
			return nil, err
		}
		if l, err := meta.ListAccessor(obj); err == nil {
			out.ResourceVersion, out.Continue, out.RemainingItemCount = l.GetResourceVersion(), l.GetContinue(), l.GetRemainingItemCount()
		}
	} else {
		add(obj)
		if m, err := meta.Accessor(obj); err == nil {
			out.ResourceVersion = m.GetResourceVersion()
		}
	}
	return out, nil
}

func column(name, typ string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ}
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

var jobTable = &table{
	columns: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"}, column("Status", "string"),
		column("Completions", "string"), column("Duration", "string"), column("Age", "string"),
	},
	row: func(obj runtime.Object) []any {
		j := obj.(*batchv1.Job)
		status := "Running"
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
				status = string(c.Type)
			}
		}
		completions := fmt.Sprintf("%d", j.Status.Succeeded)
		if j.Spec.Completions != nil {
			completions += fmt.Sprintf("/%d", *j.Spec.Completions)
		}
		took := ""
		if j.Status.StartTime != nil {
			end := time.Now()
			if j.Status.CompletionTime != nil {
				end = j.Status.CompletionTime.Time
			}
			took = duration.HumanDuration(end.Sub(j.Status.StartTime.Time))
		}
		return []any{j.Name, status, completions, took, age(j.CreationTimestamp)}
	},
}

var eventTable = &table{
	columns: []metav1.TableColumnDefinition{
		column("Last Seen", "string"), column("Type", "string"), column("Reason", "string"),
		column("Object", "string"), column("Message", "string"),
		{Name: "Name", Type: "string", Format: "name", Priority: 1},
	},
	row: func(obj runtime.Object) []any {
		e := obj.(*corev1.Event)
		seen := e.LastTimestamp
		if e.Series != nil {
			seen = metav1.Time{Time: e.Series.LastObservedTime.Time}
		} else if seen.IsZero() {
			seen = metav1.Time{Time: e.EventTime.Time}
		}
		object := fmt.Sprintf("%s/%s", e.InvolvedObject.Kind, e.InvolvedObject.Name)
		return []any{age(seen), e.Type, e.Reason, object, e.Message, e.Name}
	},
}

var podTable = &table{
	columns: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name"}, column("Ready", "string"),
		column("Status", "string"), column("Restarts", "string"), column("Age", "string"),
		{Name: "Node", Type: "string", Priority: 1},
	},
	row: func(obj runtime.Object) []any {
		p := obj.(*corev1.Pod)
		ready, restarts := 0, int32(0)
		status := string(p.Status.Phase)
		if p.Status.Reason != "" {
			status = p.Status.Reason
		}
		// As kubectl prints it: a container's own reason wins over the phase.
		for _, c := range p.Status.ContainerStatuses {
			restarts += c.RestartCount
			if c.Ready {
				ready++
			}
			switch {
			case c.State.Waiting != nil && c.State.Waiting.Reason != "":
				status = c.State.Waiting.Reason
			case c.State.Terminated != nil && c.State.Terminated.Reason != "":
				status = c.State.Terminated.Reason
			}
		}
		if p.DeletionTimestamp != nil {
			status = "Terminating"
		}
		node := p.Spec.NodeName
		if node == "" {
			node = "<none>"
		}
		return []any{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), status,
			fmt.Sprintf("%d", restarts), age(p.CreationTimestamp), node}
	},
}
