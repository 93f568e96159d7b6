// A minimal garbage collector: when an object is deleted, the objects it owns (by
// ownerReferences) are deleted too, in the background, once none of their owners exists.
//
// It watches the metadata of every resource that discovery lists, and asks discovery again
// when a CRD changes, so that new custom resources are watched too (no polling). Before it deletes a dependent, it asks the API server for each
// owner, so that a watch that lags never deletes an object whose owner exists. Foreground and
// orphan propagation are not implemented: the API server runs with --enable-garbage-collector
// off, so it never waits on them.
package main

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

type collector struct {
	meta      metadata.Interface
	discovery discovery.DiscoveryInterface
	factory   metadatainformer.SharedInformerFactory
	// rediscover is signalled when a CRD changes.
	rediscover chan struct{}

	mu         sync.Mutex
	resources  map[schema.GroupKind]resource         // from discovery
	watched    map[schema.GroupVersionResource]bool  //
	objects    map[types.UID]bool                    // every object seen
	dependents map[types.UID]map[types.UID]dependent // by owner
}

type resource struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

type dependent struct {
	gvr             schema.GroupVersionResource
	namespace, name string
	uid             types.UID
	owners          []metav1.OwnerReference
}

func newCollector(cfg *rest.Config) (*collector, error) {
	m, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	d, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &collector{
		meta: m, discovery: d, factory: metadatainformer.NewSharedInformerFactory(m, 0),
		rediscover: make(chan struct{}, 1),
		resources:  map[schema.GroupKind]resource{}, watched: map[schema.GroupVersionResource]bool{},
		objects: map[types.UID]bool{}, dependents: map[types.UID]map[types.UID]dependent{},
	}, nil
}

func (c *collector) run(ctx context.Context) {
	for {
		c.discover(ctx)
		select {
		case <-ctx.Done():
			return
		case <-c.rediscover:
		}
	}
}

// discover watches every resource that can be listed, watched and deleted.
func (c *collector) discover(ctx context.Context) {
	lists, err := c.discovery.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		klog.Warningf("garbage collector: discovery: %v", err)
		return
	}
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			verbs := map[string]bool{}
			for _, v := range r.Verbs {
				verbs[v] = true
			}
			if !verbs["list"] || !verbs["watch"] || !verbs["delete"] {
				continue
			}
			gvr := gv.WithResource(r.Name)
			c.mu.Lock()
			c.resources[schema.GroupKind{Group: gv.Group, Kind: r.Kind}] = resource{gvr, r.Namespaced}
			seen := c.watched[gvr]
			c.watched[gvr] = true
			c.mu.Unlock()
			if seen {
				continue
			}
			_, err := c.factory.ForResource(gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { c.seen(ctx, gvr, obj) },
				UpdateFunc: func(_, obj any) { c.seen(ctx, gvr, obj) },
				DeleteFunc: func(obj any) { c.gone(ctx, obj) },
			})
			if err != nil {
				klog.Warningf("garbage collector: watching %s: %v", gvr, err)
			}
		}
	}
	c.factory.Start(ctx.Done())
}

func (c *collector) seen(ctx context.Context, gvr schema.GroupVersionResource, obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	if gvr.Group == "apiextensions.k8s.io" && gvr.Resource == "customresourcedefinitions" {
		select {
		case c.rediscover <- struct{}{}:
		default:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.objects[m.UID] = true
	if len(m.OwnerReferences) == 0 {
		return
	}
	d := dependent{gvr: gvr, namespace: m.Namespace, name: m.Name, uid: m.UID, owners: m.OwnerReferences}
	orphan := true
	for _, o := range m.OwnerReferences {
		if c.dependents[o.UID] == nil {
			c.dependents[o.UID] = map[types.UID]dependent{}
		}
		c.dependents[o.UID][m.UID] = d
		orphan = orphan && !c.objects[o.UID]
	}
	if orphan {
		// Its owners may be gone already, or not yet seen: check a little later.
		time.AfterFunc(2*time.Second, func() { c.check(ctx, d) })
	}
}

func (c *collector) gone(ctx context.Context, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	c.mu.Lock()
	delete(c.objects, m.UID)
	deps := c.dependents[m.UID]
	delete(c.dependents, m.UID)
	for _, o := range m.OwnerReferences {
		delete(c.dependents[o.UID], m.UID)
	}
	c.mu.Unlock()
	for _, d := range deps {
		go c.check(ctx, d)
	}
}

// check deletes d when none of its owners exists, as the API server says.
func (c *collector) check(ctx context.Context, d dependent) {
	for _, o := range d.owners {
		c.mu.Lock()
		known := c.objects[o.UID]
		gv, _ := schema.ParseGroupVersion(o.APIVersion)
		r, found := c.resources[schema.GroupKind{Group: gv.Group, Kind: o.Kind}]
		c.mu.Unlock()
		if known || !found {
			return // the owner exists, or is of a kind not served here: keep
		}
		api := c.meta.Resource(r.gvr)
		var owner *metav1.PartialObjectMetadata
		var err error
		if r.namespaced {
			owner, err = api.Namespace(d.namespace).Get(ctx, o.Name, metav1.GetOptions{})
		} else {
			owner, err = api.Get(ctx, o.Name, metav1.GetOptions{})
		}
		if err == nil && owner.UID == o.UID {
			return
		}
		if err != nil && !apierrors.IsNotFound(err) {
			klog.Warningf("garbage collector: reading the owner %s %s of %s/%s: %v", o.Kind, o.Name, d.namespace, d.name, err)
			return
		}
	}
	background := metav1.DeletePropagationBackground
	uid := d.uid
	err := c.meta.Resource(d.gvr).Namespace(d.namespace).Delete(ctx, d.name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &background,
	})
	switch {
	case err == nil:
		klog.Infof("garbage collector: deleted %s %s/%s: its owners are gone", d.gvr.Resource, d.namespace, d.name)
	case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
		klog.Warningf("garbage collector: deleting %s %s/%s: %v", d.gvr.Resource, d.namespace, d.name, err)
	}
}
