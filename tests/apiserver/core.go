// The built-in objects that cloudmigrate's controller and workers use, served by the upstream
// generic registry store on the same etcd as the custom resources:
//
//	core v1:                 secrets, configmaps, namespaces, serviceaccounts, events,
//	                         pods (with pods/status)
//	batch/v1:                jobs (with jobs/status)
//	coordination.k8s.io/v1:  leases
//	events.k8s.io/v1:        events (the same objects as core v1 events, as in kube-apiserver)
//
// The k8s.io/api types are registered as their own internal version, so no conversion is needed
// except between the two Event shapes. Events and Pods can be selected by the fields that
// kube-apiserver lets a field selector name (`involvedObject.kind`, `reason`, `spec.nodeName`,
// `status.phase`, ...). Each kind gets only the strategy it needs: system fields,
// defaults that the tests rely on, the status subresource of Jobs, and the immutable fields and
// validations that a real server would refuse a request for.
package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

var (
	coreScheme = runtime.NewScheme()
	coreCodecs = serializer.NewCodecFactory(coreScheme)
	coreParams = runtime.NewParameterCodec(coreScheme)
)

// servedRoots are the top-level types whose OpenAPI definitions the server needs.
var servedRoots = []any{
	corev1.Secret{}, corev1.SecretList{}, corev1.ConfigMap{}, corev1.ConfigMapList{},
	corev1.Namespace{}, corev1.NamespaceList{}, corev1.ServiceAccount{}, corev1.ServiceAccountList{},
	corev1.Event{}, corev1.EventList{}, corev1.Pod{}, corev1.PodList{}, batchv1.Job{}, batchv1.JobList{},
	coordinationv1.Lease{}, coordinationv1.LeaseList{}, eventsv1.Event{}, eventsv1.EventList{},
}

func init() {
	add := func(gv schema.GroupVersion, objs ...runtime.Object) {
		coreScheme.AddKnownTypes(gv, objs...)
		coreScheme.AddKnownTypes(schema.GroupVersion{Group: gv.Group, Version: runtime.APIVersionInternal}, objs...)
		metav1.AddToGroupVersion(coreScheme, gv)
	}
	add(corev1.SchemeGroupVersion, &corev1.Secret{}, &corev1.SecretList{}, &corev1.ConfigMap{},
		&corev1.ConfigMapList{}, &corev1.Namespace{}, &corev1.NamespaceList{}, &corev1.ServiceAccount{},
		&corev1.ServiceAccountList{}, &corev1.Event{}, &corev1.EventList{}, &corev1.Pod{}, &corev1.PodList{})
	for _, k := range []*kind{coreEvents, pods} {
		k := k
		must(coreScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind(k.kindName),
			func(label, value string) (string, string, error) {
				if _, ok := k.fields(k.new())[label]; ok {
					return label, value, nil
				}
				return "", "", fmt.Errorf("field label not supported: %s", label)
			}))
	}
	add(batchv1.SchemeGroupVersion, &batchv1.Job{}, &batchv1.JobList{})
	add(coordinationv1.SchemeGroupVersion, &coordinationv1.Lease{}, &coordinationv1.LeaseList{})
	// events.k8s.io/v1 is another view of the core Events: internally it is the core type.
	coreScheme.AddKnownTypes(eventsv1.SchemeGroupVersion, &eventsv1.Event{}, &eventsv1.EventList{})
	coreScheme.AddKnownTypes(schema.GroupVersion{Group: eventsv1.GroupName, Version: runtime.APIVersionInternal},
		&corev1.Event{}, &corev1.EventList{})
	metav1.AddToGroupVersion(coreScheme, eventsv1.SchemeGroupVersion)
	must(coreScheme.AddConversionFunc((*eventsv1.Event)(nil), (*corev1.Event)(nil),
		func(a, b any, _ conversion.Scope) error {
			eventToCore(a.(*eventsv1.Event), b.(*corev1.Event))
			return nil
		}))
	must(coreScheme.AddConversionFunc((*corev1.Event)(nil), (*eventsv1.Event)(nil),
		func(a, b any, _ conversion.Scope) error {
			eventFromCore(a.(*corev1.Event), b.(*eventsv1.Event))
			return nil
		}))
	must(coreScheme.AddConversionFunc((*eventsv1.EventList)(nil), (*corev1.EventList)(nil),
		func(a, b any, _ conversion.Scope) error {
			in, out := a.(*eventsv1.EventList), b.(*corev1.EventList)
			out.ListMeta = in.ListMeta
			out.Items = make([]corev1.Event, len(in.Items))
			for i := range in.Items {
				eventToCore(&in.Items[i], &out.Items[i])
			}
			return nil
		}))
	must(coreScheme.AddConversionFunc((*corev1.EventList)(nil), (*eventsv1.EventList)(nil),
		func(a, b any, _ conversion.Scope) error {
			in, out := a.(*corev1.EventList), b.(*eventsv1.EventList)
			out.ListMeta = in.ListMeta
			out.Items = make([]eventsv1.Event, len(in.Items))
			for i := range in.Items {
				eventFromCore(&in.Items[i], &out.Items[i])
			}
			return nil
		}))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// installCoreAPIs installs the built-in groups on the server, stored through restOptions.
func installCoreAPIs(s *genericapiserver.GenericAPIServer, restOptions generic.RESTOptionsGetter) error {
	core := genericapiserver.NewDefaultAPIGroupInfo("", coreScheme, coreParams, coreCodecs)
	stores := map[string]rest.Storage{}
	for _, k := range []*kind{secrets, configMaps, namespaces, serviceAccounts, coreEvents, pods} {
		if err := k.install(stores, restOptions); err != nil {
			return err
		}
	}
	core.VersionedResourcesStorageMap["v1"] = stores
	if err := s.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &core); err != nil {
		return err
	}

	var groups []*genericapiserver.APIGroupInfo
	for _, k := range []*kind{jobs, leases, newEvents} {
		info := genericapiserver.NewDefaultAPIGroupInfo(k.group, coreScheme, coreParams, coreCodecs)
		resources := map[string]rest.Storage{}
		if err := k.install(resources, restOptions); err != nil {
			return err
		}
		info.VersionedResourcesStorageMap["v1"] = resources
		groups = append(groups, &info)
	}
	return s.InstallAPIGroups(groups...)
}

// install adds the kind's store to resources, and its status subresource if it has one.
func (k *kind) install(resources map[string]rest.Storage, restOptions generic.RESTOptionsGetter) error {
	store, err := k.store(restOptions)
	if err != nil {
		return err
	}
	resources[k.resource] = served{store, k}
	if k.status {
		status := *store
		status.UpdateStrategy = statusStrategy{k.strategy()}
		status.ResetFieldsStrategy = statusStrategy{k.strategy()}
		resources[k.resource+"/status"] = &statusREST{&status}
	}
	return nil
}

// kind is what the store of one resource needs to know.
type kind struct {
	group, resource, singular string
	namespaced                bool
	// storedAs is the resource whose storage this one shares (events.k8s.io events).
	storedAs       string
	new, newList   func() runtime.Object
	status         bool
	prepare        func(obj, old runtime.Object)
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	table          *table
	shortNames     []string
	categories     []string
	// fields are the fields a field selector may name, beyond metadata.name and
	// metadata.namespace; kindName is the kind they are registered for.
	fields   func(obj runtime.Object) fields.Set
	kindName string
}

// served is a store with the names kubectl knows it by.
type served struct {
	*genericregistry.Store
	k *kind
}

func (s served) ShortNames() []string { return s.k.shortNames }
func (s served) Categories() []string { return s.k.categories }

func (k *kind) strategy() strategy { return strategy{coreScheme, names.SimpleNameGenerator, k} }

func (k *kind) store(restOptions generic.RESTOptionsGetter) (*genericregistry.Store, error) {
	gr := schema.GroupResource{Group: k.group, Resource: k.resource}
	s := &genericregistry.Store{
		NewFunc:                   k.new,
		NewListFunc:               k.newList,
		DefaultQualifiedResource:  gr,
		SingularQualifiedResource: schema.GroupResource{Group: k.group, Resource: k.singular},
		CreateStrategy:            k.strategy(),
		UpdateStrategy:            k.strategy(),
		DeleteStrategy:            k.strategy(),
		ResetFieldsStrategy:       k.strategy(),
		TableConvertor:            rest.NewDefaultTableConvertor(gr),
	}
	if k.table != nil {
		s.TableConvertor = k.table
	}
	storedAs := gr
	if k.storedAs != "" {
		storedAs = schema.GroupResource{Resource: k.storedAs}
	}
	options, err := restOptions.GetRESTOptions(storedAs, k.new())
	if err != nil {
		return nil, err
	}
	storeOptions := &generic.StoreOptions{RESTOptions: fixedOptions{options}}
	if k.fields != nil {
		storeOptions.AttrFunc = func(obj runtime.Object) (labels.Set, fields.Set, error) {
			return labels.Set(accessor(obj).GetLabels()), k.fields(obj), nil
		}
	}
	if err := s.CompleteWithOptions(storeOptions); err != nil {
		return nil, err
	}
	return s, nil
}

// fixedOptions hands the store the options of the resource it shares its storage with.
type fixedOptions struct{ generic.RESTOptions }

func (o fixedOptions) GetRESTOptions(schema.GroupResource, runtime.Object) (generic.RESTOptions, error) {
	return o.RESTOptions, nil
}

// strategy is the create, update and delete strategy of every kind served here.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	k *kind
}

func (s strategy) NamespaceScoped() bool          { return s.k.namespaced }
func (s strategy) AllowCreateOnUpdate() bool      { return false }
func (s strategy) AllowUnconditionalUpdate() bool { return true }
func (s strategy) Canonicalize(runtime.Object)    {}
func (s strategy) WarningsOnCreate(context.Context, runtime.Object) []string {
	return nil
}
func (s strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if s.k.status {
		setField(obj, "Status", reflect.Zero(fieldOf(obj, "Status").Type()))
		accessor(obj).SetGeneration(1)
	}
	if s.k.prepare != nil {
		s.k.prepare(obj, nil)
	}
}

func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if s.k.status {
		// The main resource never changes the status, and a new spec is a new generation.
		setField(obj, "Status", fieldOf(old, "Status"))
		if !reflect.DeepEqual(fieldOf(obj, "Spec").Interface(), fieldOf(old, "Spec").Interface()) {
			accessor(obj).SetGeneration(accessor(old).GetGeneration() + 1)
		}
	}
	if s.k.prepare != nil {
		s.k.prepare(obj, old)
	}
}

func (s strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	nameFn := apimachineryvalidation.NameIsDNSSubdomain
	if s.k == namespaces {
		nameFn = apimachineryvalidation.ValidateNamespaceName
	}
	errs := apimachineryvalidation.ValidateObjectMeta(objectMeta(obj), s.k.namespaced, nameFn, field.NewPath("metadata"))
	if s.k.validate != nil {
		errs = append(errs, s.k.validate(obj)...)
	}
	return errs
}

func (s strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	errs := apimachineryvalidation.ValidateObjectMetaUpdate(objectMeta(obj), objectMeta(old), field.NewPath("metadata"))
	if s.k.validate != nil {
		errs = append(errs, s.k.validate(obj)...)
	}
	if s.k.validateUpdate != nil {
		errs = append(errs, s.k.validateUpdate(obj, old)...)
	}
	return errs
}

// GetResetFields: a kind with a status subresource ignores status in writes of the main
// resource, also under server-side apply.
func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.k.status {
		return nil
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.k.group + "/v1"): fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// statusStrategy is the update strategy of a status subresource: only the status changes.
type statusStrategy struct{ strategy }

func (s statusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	setField(obj, "Spec", fieldOf(old, "Spec"))
	// Status writes keep the metadata that only the main resource changes.
	m, o := objectMeta(obj), objectMeta(old)
	m.Labels, m.Annotations, m.Finalizers, m.OwnerReferences = o.Labels, o.Annotations, o.Finalizers, o.OwnerReferences
}

func (s statusStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return apimachineryvalidation.ValidateObjectMetaUpdate(objectMeta(obj), objectMeta(old), field.NewPath("metadata"))
}

func (s statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.k.group + "/v1"): fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations")),
	}
}

// statusREST serves a status subresource from a copy of the main store.
type statusREST struct{ store *genericregistry.Store }

func (r *statusREST) New() runtime.Object { return r.store.New() }
func (r *statusREST) Destroy()            {}
func (r *statusREST) Get(ctx context.Context, name string, o *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, o)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo,
	createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc,
	_ bool, o *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, o)
}
func (r *statusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

func fieldOf(obj runtime.Object, name string) reflect.Value {
	return reflect.ValueOf(obj).Elem().FieldByName(name)
}

func setField(obj runtime.Object, name string, v reflect.Value) {
	fieldOf(obj, name).Set(v)
}

func accessor(obj runtime.Object) metav1.Object {
	a, err := meta.Accessor(obj)
	if err != nil {
		panic(err) // every type served here has ObjectMeta
	}
	return a
}

func objectMeta(obj runtime.Object) *metav1.ObjectMeta {
	return obj.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta)
}

func immutable(path *field.Path, now, before any) field.ErrorList {
	if reflect.DeepEqual(now, before) {
		return nil
	}
	return field.ErrorList{field.Invalid(path, now, apimachineryvalidation.FieldImmutableErrorMsg)}
}

// The kinds.

var secrets = &kind{
	resource: "secrets", singular: "secret", namespaced: true,
	new:     func() runtime.Object { return &corev1.Secret{} },
	newList: func() runtime.Object { return &corev1.SecretList{} },
	prepare: func(obj, _ runtime.Object) {
		s := obj.(*corev1.Secret)
		// stringData is write-only: it is merged into data, as kube-apiserver does.
		for k, v := range s.StringData {
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
		if s.Type == "" {
			s.Type = corev1.SecretTypeOpaque
		}
	},
	validate: func(obj runtime.Object) field.ErrorList {
		s := obj.(*corev1.Secret)
		errs := validateKeys(field.NewPath("data"), s.Data)
		switch s.Type {
		case corev1.SecretTypeBasicAuth:
			_, user := s.Data[corev1.BasicAuthUsernameKey]
			_, password := s.Data[corev1.BasicAuthPasswordKey]
			if !user && !password {
				errs = append(errs, field.Required(field.NewPath("data[username]"), "either username or password is required for a basic-auth Secret"))
			}
		case corev1.SecretTypeTLS:
			for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				if _, ok := s.Data[key]; !ok {
					errs = append(errs, field.Required(field.NewPath("data").Key(key), ""))
				}
			}
		}
		return errs
	},
	validateUpdate: func(obj, old runtime.Object) field.ErrorList {
		s, o := obj.(*corev1.Secret), old.(*corev1.Secret)
		errs := immutable(field.NewPath("type"), s.Type, o.Type)
		if o.Immutable != nil && *o.Immutable {
			errs = append(errs, immutable(field.NewPath("immutable"), s.Immutable, o.Immutable)...)
			errs = append(errs, immutable(field.NewPath("data"), s.Data, o.Data)...)
		}
		return errs
	},
}

var configMaps = &kind{
	resource: "configmaps", singular: "configmap", shortNames: []string{"cm"}, namespaced: true,
	new:     func() runtime.Object { return &corev1.ConfigMap{} },
	newList: func() runtime.Object { return &corev1.ConfigMapList{} },
	validate: func(obj runtime.Object) field.ErrorList {
		c := obj.(*corev1.ConfigMap)
		errs := validateKeys(field.NewPath("binaryData"), c.BinaryData)
		for k := range c.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
			}
			if _, twice := c.BinaryData[k]; twice {
				errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
			}
		}
		return errs
	},
	validateUpdate: func(obj, old runtime.Object) field.ErrorList {
		c, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
		if o.Immutable == nil || !*o.Immutable {
			return nil
		}
		errs := immutable(field.NewPath("immutable"), c.Immutable, o.Immutable)
		errs = append(errs, immutable(field.NewPath("data"), c.Data, o.Data)...)
		return append(errs, immutable(field.NewPath("binaryData"), c.BinaryData, o.BinaryData)...)
	},
}

func validateKeys[V any](path *field.Path, data map[string]V) field.ErrorList {
	var errs field.ErrorList
	for k := range data {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(path.Key(k), k, msg))
		}
	}
	return errs
}

var namespaces = &kind{
	resource: "namespaces", singular: "namespace", shortNames: []string{"ns"},
	new:     func() runtime.Object { return &corev1.Namespace{} },
	newList: func() runtime.Object { return &corev1.NamespaceList{} },
	prepare: func(obj, old runtime.Object) {
		n := obj.(*corev1.Namespace)
		if old != nil {
			n.Status = old.(*corev1.Namespace).Status
			return
		}
		n.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[corev1.LabelMetadataName] = n.Name
	},
}

var serviceAccounts = &kind{
	resource: "serviceaccounts", singular: "serviceaccount", shortNames: []string{"sa"}, namespaced: true,
	new:     func() runtime.Object { return &corev1.ServiceAccount{} },
	newList: func() runtime.Object { return &corev1.ServiceAccountList{} },
}

var coreEvents = &kind{
	resource: "events", singular: "event", namespaced: true, shortNames: []string{"ev"},
	new:      func() runtime.Object { return &corev1.Event{} },
	newList:  func() runtime.Object { return &corev1.EventList{} },
	table:    eventTable,
	kindName: "Event",
	fields:   eventFields,
}

// eventFields are the fields of an Event a field selector may name, as in kube-apiserver.
func eventFields(obj runtime.Object) fields.Set {
	e := obj.(*corev1.Event)
	o := e.InvolvedObject
	return fields.Set{
		"metadata.name": e.Name, "metadata.namespace": e.Namespace,
		"involvedObject.kind": o.Kind, "involvedObject.namespace": o.Namespace,
		"involvedObject.name": o.Name, "involvedObject.uid": string(o.UID),
		"involvedObject.apiVersion": o.APIVersion, "involvedObject.resourceVersion": o.ResourceVersion,
		"involvedObject.fieldPath": o.FieldPath, "reason": e.Reason,
		"reportingComponent": e.ReportingController, "source": e.Source.Component, "type": e.Type,
	}
}

// pods: what the Job executor (helpers.go) writes in place of the Job controller, the
// scheduler and the kubelet. The status subresource is theirs; nothing checks a pod's spec
// beyond its containers, and no admission plugin runs (the executor itself refuses a pod whose
// ServiceAccount is missing, as the ServiceAccount admission plugin would).
var pods = &kind{
	resource: "pods", singular: "pod", shortNames: []string{"po"}, namespaced: true, status: true,
	categories: []string{"all"},
	new:        func() runtime.Object { return &corev1.Pod{} },
	newList:    func() runtime.Object { return &corev1.PodList{} },
	table:      podTable,
	kindName:   "Pod",
	fields: func(obj runtime.Object) fields.Set {
		p := obj.(*corev1.Pod)
		return fields.Set{
			"metadata.name": p.Name, "metadata.namespace": p.Namespace,
			"spec.nodeName": p.Spec.NodeName, "spec.serviceAccountName": p.Spec.ServiceAccountName,
			"spec.restartPolicy": string(p.Spec.RestartPolicy), "spec.schedulerName": p.Spec.SchedulerName,
			"status.phase": string(p.Status.Phase), "status.podIP": p.Status.PodIP,
			"status.nominatedNodeName": p.Status.NominatedNodeName,
		}
	},
	prepare: func(obj, old runtime.Object) {
		p := obj.(*corev1.Pod)
		if old == nil {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}
			if p.Spec.SchedulerName == "" {
				p.Spec.SchedulerName = corev1.DefaultSchedulerName
			}
		}
	},
	validate: func(obj runtime.Object) field.ErrorList {
		p := obj.(*corev1.Pod)
		if len(p.Spec.Containers) == 0 {
			return field.ErrorList{field.Required(field.NewPath("spec", "containers"), "")}
		}
		return nil
	},
}

var newEvents = &kind{
	group: eventsv1.GroupName, resource: "events", singular: "event", namespaced: true, storedAs: "events",
	shortNames: []string{"ev"},
	new:        func() runtime.Object { return &corev1.Event{} },
	newList:    func() runtime.Object { return &corev1.EventList{} },
	table:      eventTable,
	validate: func(obj runtime.Object) field.ErrorList {
		e := obj.(*corev1.Event)
		var errs field.ErrorList
		if e.EventTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
		}
		if e.ReportingController == "" {
			errs = append(errs, field.Required(field.NewPath("reportingController"), ""))
		}
		if e.ReportingInstance == "" {
			errs = append(errs, field.Required(field.NewPath("reportingInstance"), ""))
		}
		if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
			errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
		}
		if len(e.Message) > 1024 {
			errs = append(errs, field.TooLong(field.NewPath("note"), "", 1024))
		}
		return errs
	},
}

var leases = &kind{
	group: coordinationv1.GroupName, resource: "leases", singular: "lease", namespaced: true,
	new:     func() runtime.Object { return &coordinationv1.Lease{} },
	newList: func() runtime.Object { return &coordinationv1.LeaseList{} },
}

var jobs = &kind{
	group: batchv1.GroupName, resource: "jobs", singular: "job", namespaced: true, status: true,
	categories: []string{"all"},
	new:        func() runtime.Object { return &batchv1.Job{} },
	newList:    func() runtime.Object { return &batchv1.JobList{} },
	table:      jobTable,
	prepare: func(obj, old runtime.Object) {
		if old != nil {
			return
		}
		// The defaults of the batch/v1 API that the Job executor reads.
		spec := &obj.(*batchv1.Job).Spec
		one := int32(1)
		if spec.Completions == nil && spec.Parallelism == nil {
			spec.Completions = &one
		}
		if spec.Parallelism == nil {
			spec.Parallelism = &one
		}
		if spec.BackoffLimit == nil {
			six := int32(6)
			spec.BackoffLimit = &six
		}
		if spec.CompletionMode == nil {
			mode := batchv1.NonIndexedCompletion
			spec.CompletionMode = &mode
		}
		if spec.Suspend == nil {
			no := false
			spec.Suspend = &no
		}
	},
	validate: func(obj runtime.Object) field.ErrorList {
		j := obj.(*batchv1.Job)
		generateSelector(j)
		return validateJob(j)
	},
	validateUpdate: func(obj, old runtime.Object) field.ErrorList {
		j, o := &obj.(*batchv1.Job).Spec, &old.(*batchv1.Job).Spec
		path := field.NewPath("spec")
		errs := immutable(path.Child("selector"), j.Selector, o.Selector)
		errs = append(errs, immutable(path.Child("completions"), j.Completions, o.Completions)...)
		errs = append(errs, immutable(path.Child("completionMode"), j.CompletionMode, o.CompletionMode)...)
		return append(errs, immutable(path.Child("template"), j.Template, o.Template)...)
	},
}

// generateSelector labels a Job's pods with its uid and name, and selects them by the uid, as
// kube-apiserver does for a Job without manualSelector.
func generateSelector(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	uid := string(j.UID)
	for k, v := range map[string]string{
		batchv1.ControllerUidLabel: uid, batchv1.JobNameLabel: j.Name,
		"controller-uid": uid, "job-name": j.Name,
	} {
		j.Spec.Template.Labels[k] = v
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: uid}}
	}
}

func validateJob(j *batchv1.Job) field.ErrorList {
	spec, path := &j.Spec, field.NewPath("spec")
	var errs field.ErrorList
	for name, v := range map[string]*int32{"parallelism": spec.Parallelism, "completions": spec.Completions, "backoffLimit": spec.BackoffLimit} {
		if v != nil && *v < 0 {
			errs = append(errs, field.Invalid(path.Child(name), *v, "must be greater than or equal to 0"))
		}
	}
	if spec.ActiveDeadlineSeconds != nil && *spec.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("activeDeadlineSeconds"), *spec.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	if spec.CompletionMode != nil {
		switch *spec.CompletionMode {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			if spec.Completions == nil {
				errs = append(errs, field.Required(path.Child("completions"), "when completion mode is Indexed"))
			}
		default:
			errs = append(errs, field.NotSupported(path.Child("completionMode"), *spec.CompletionMode,
				[]string{string(batchv1.NonIndexedCompletion), string(batchv1.IndexedCompletion)}))
		}
	}
	tmpl := path.Child("template")
	errs = append(errs, metav1validation.ValidateLabels(spec.Template.Labels, tmpl.Child("metadata", "labels"))...)
	if spec.Selector == nil {
		errs = append(errs, field.Required(path.Child("selector"), ""))
	} else if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err != nil {
		errs = append(errs, field.Invalid(path.Child("selector"), spec.Selector, err.Error()))
	} else if !sel.Matches(labels.Set(spec.Template.Labels)) {
		errs = append(errs, field.Invalid(tmpl.Child("metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	pod := tmpl.Child("spec")
	switch spec.Template.Spec.RestartPolicy {
	case corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		errs = append(errs, field.NotSupported(pod.Child("restartPolicy"), spec.Template.Spec.RestartPolicy,
			[]string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}))
	}
	if len(spec.Template.Spec.Containers) == 0 {
		errs = append(errs, field.Required(pod.Child("containers"), ""))
	}
	seen := map[string]bool{}
	for i, c := range spec.Template.Spec.Containers {
		p := pod.Child("containers").Index(i)
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
		}
		if seen[c.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
		}
		seen[c.Name] = true
		if strings.TrimSpace(c.Image) == "" {
			errs = append(errs, field.Required(p.Child("image"), ""))
		}
		for k, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(p.Child("env").Index(k).Child("name"), e.Name, msg))
			}
		}
	}
	return errs
}

func eventToCore(in *eventsv1.Event, out *corev1.Event) {
	*out = corev1.Event{
		ObjectMeta:          in.ObjectMeta,
		EventTime:           in.EventTime,
		Action:              in.Action,
		Reason:              in.Reason,
		Message:             in.Note,
		Type:                in.Type,
		InvolvedObject:      in.Regarding,
		Related:             in.Related,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
}

func eventFromCore(in *corev1.Event, out *eventsv1.Event) {
	*out = eventsv1.Event{
		ObjectMeta:               in.ObjectMeta,
		EventTime:                in.EventTime,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Note:                     in.Message,
		Type:                     in.Type,
		Regarding:                in.InvolvedObject,
		Related:                  in.Related,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
}

var _ = fmt.Sprintf
