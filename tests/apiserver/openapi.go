// OpenAPI definitions of the k8s.io/api types served here, built by reflection.
//
// kube-apiserver compiles in definitions that openapi-gen writes from the types' source; that
// generated package lives in k8s.io/kubernetes, which Debian does not package. The server needs
// the definitions for `kubectl apply`, `kubectl explain` and the type converter of server-side
// apply, so they are derived here from the same Go types: field names and shapes from the json
// tags, descriptions from the types' SwaggerDoc, merge keys from the patch tags, and the
// special encodings (times, quantities, int-or-string) from the types' OpenAPI methods.
package main

import (
	"reflect"
	"strings"

	"k8s.io/kube-openapi/pkg/common"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// withServedDefinitions adds the definitions of every type reachable from servedRoots to base.
func withServedDefinitions(base common.GetOpenAPIDefinitions) common.GetOpenAPIDefinitions {
	return func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		defs := base(ref)
		r := reflector{ref: ref, defs: defs}
		for _, root := range servedRoots {
			r.define(reflect.TypeOf(root))
		}
		return defs
	}
}

type reflector struct {
	ref  common.ReferenceCallback
	defs map[string]common.OpenAPIDefinition
}

func modelName(t reflect.Type) string {
	return openapiutil.GetCanonicalTypeName(reflect.New(t).Interface())
}

// define adds the definition of the named struct type t (unless there is one) and returns its
// name.
func (r *reflector) define(t reflect.Type) string {
	name := modelName(t)
	if _, ok := r.defs[name]; ok {
		return name
	}
	r.defs[name] = common.OpenAPIDefinition{} // a recursive type refers to itself by name
	var deps []string
	var s spec.Schema
	sample := reflect.New(t).Interface()
	if typed, ok := sample.(interface{ OpenAPISchemaType() []string }); ok {
		s.Type = typed.OpenAPISchemaType()
		if f, ok := sample.(interface{ OpenAPISchemaFormat() string }); ok {
			s.Format = f.OpenAPISchemaFormat()
		}
		if s.Format == "int-or-string" {
			s = spec.Schema{}
			s.AddExtension("x-kubernetes-int-or-string", true)
		}
	} else {
		docs := swaggerDocs(t)
		s.Type = []string{"object"}
		s.Description = docs[""]
		s.Properties = map[string]spec.Schema{}
		r.fields(t, &s, &deps)
	}
	r.defs[name] = common.OpenAPIDefinition{Schema: s, Dependencies: deps}
	return name
}

// fields adds the json fields of struct t (and of the structs it inlines) to s.
func (r *reflector) fields(t reflect.Type, s *spec.Schema, deps *[]string) {
	docs := swaggerDocs(t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("json"), ",")
		name := tag[0]
		if name == "-" {
			continue
		}
		inline := false
		for _, o := range tag[1:] {
			inline = inline || o == "inline"
		}
		if f.Anonymous && (name == "" || inline) {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			r.fields(ft, s, deps)
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := r.schema(f.Type, f.Tag, deps)
		p.Description = docs[name]
		s.Properties[name] = p
	}
}

// schema is the schema of a value of type t; a named struct is a reference.
func (r *reflector) schema(t reflect.Type, tag reflect.StructTag, deps *[]string) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var s spec.Schema
	switch t.Kind() {
	case reflect.Struct:
		name := r.define(t)
		*deps = append(*deps, name)
		s.Ref = r.ref(name)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s.Type, s.Format = []string{"string"}, "byte"
			break
		}
		item := r.schema(t.Elem(), "", deps)
		s.Type = []string{"array"}
		s.Items = &spec.SchemaOrArray{Schema: &item}
		key := tag.Get("patchMergeKey")
		if strategy := tag.Get("patchStrategy"); strings.Contains(strategy, "merge") {
			s.AddExtension("x-kubernetes-patch-strategy", strategy)
			if key != "" {
				s.AddExtension("x-kubernetes-patch-merge-key", key)
				s.AddExtension("x-kubernetes-list-type", "map")
				s.AddExtension("x-kubernetes-list-map-keys", []any{key})
			}
		}
	case reflect.Map:
		value := r.schema(t.Elem(), "", deps)
		s.Type = []string{"object"}
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: &value}
	case reflect.String:
		s.Type = []string{"string"}
	case reflect.Bool:
		s.Type = []string{"boolean"}
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8:
		s.Type, s.Format = []string{"integer"}, "int32"
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint:
		s.Type, s.Format = []string{"integer"}, "int64"
	case reflect.Float32, reflect.Float64:
		s.Type, s.Format = []string{"number"}, "double"
	default: // interface{}: anything
		s.Type = []string{"object"}
		s.AddExtension("x-kubernetes-preserve-unknown-fields", true)
	}
	return s
}

func swaggerDocs(t reflect.Type) map[string]string {
	if d, ok := reflect.New(t).Interface().(interface{ SwaggerDoc() map[string]string }); ok {
		return d.SwaggerDoc()
	}
	return nil
}
