// `helpers`: the parts of a cluster that the test API server lacks, in one process.
//
//   - The Job executor plays the Job controller and the kubelet: it watches Jobs and runs each
//     pod of a Job as a local process (the container's command and args, with the pod's env),
//     and writes the Job's status the way the Job controller does. It creates no Pod objects.
//   - The garbage collector deletes an object once none of its owners exists (gc.go).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func helpersCommand() *cobra.Command {
	e := &executor{entrypoints: map[string]string{}}
	var entrypoints []string
	cmd := &cobra.Command{
		Use:   "helpers",
		Short: "Runs the Jobs of the test API server as local processes, and collects garbage",
		RunE: func(c *cobra.Command, _ []string) error {
			for _, m := range entrypoints {
				image, path, ok := strings.Cut(m, "=")
				if !ok {
					return fmt.Errorf("--entrypoint %q: expected IMAGE=PATH", m)
				}
				e.entrypoints[image] = path
			}
			if e.podKubeconfig == "" {
				e.podKubeconfig = e.kubeconfig
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = 100, 200
			if e.client, err = kubernetes.NewForConfig(cfg); err != nil {
				return err
			}
			if err := os.MkdirAll(e.logDir, 0o755); err != nil {
				return err
			}
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			gc, err := newCollector(cfg)
			if err != nil {
				return err
			}
			go gc.run(ctx)
			return e.run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&e.kubeconfig, "kubeconfig", "", "the kubeconfig of the API server, for the helpers' own calls")
	f.StringVar(&e.podKubeconfig, "pod-kubeconfig", "",
		"the kubeconfig the pods get as KUBECONFIG, in place of a service account token (default: --kubeconfig)")
	f.StringVar(&e.logDir, "log-dir", "pods", "where each pod's output goes, one file a pod")
	f.StringArrayVar(&entrypoints, "entrypoint", nil,
		"IMAGE=PATH: the program a container of IMAGE (any tag) runs when it sets no command, as the image's entrypoint would")
	f.DurationVar(&e.backoff, "pod-backoff", 10*time.Second,
		"the wait before a failed pod is replaced, doubling with each failure up to 6 minutes (the Job controller's is 10s)")
	return cmd
}

type executor struct {
	client      kubernetes.Interface
	jobs        batchlisters.JobLister
	kubeconfig    string
	podKubeconfig string
	logDir        string
	entrypoints map[string]string
	backoff     time.Duration

	wake  chan string
	exits chan exit
	runs  map[string]*jobRun // by namespace/name
}

// jobRun is what the executor keeps of one Job: its pods' processes and their outcomes.
type jobRun struct {
	uid       types.UID
	pods      map[int]*pod // running, by completion index (NonIndexed: a sequence number)
	succeeded map[int]bool
	failed    int32
	start     metav1.Time
	nextStart time.Time // after a failure, the back-off
	seq       int
}

type pod struct {
	name   string
	cmd    *exec.Cmd
	index  int
	killed bool
}

type exit struct {
	key string
	uid types.UID
	pod *pod
	ok  bool
}

func (e *executor) run(ctx context.Context) error {
	e.wake = make(chan string, 1024)
	e.exits = make(chan exit, 64)
	e.runs = map[string]*jobRun{}
	factory := informers.NewSharedInformerFactory(e.client, 0)
	informer := factory.Batch().V1().Jobs()
	e.jobs = informer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			e.wake <- key
		}
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	klog.Infof("job executor: watching Jobs; pod logs in %s", e.logDir)
	for {
		select {
		case <-ctx.Done():
			for _, r := range e.runs {
				r.killAll(0)
			}
			return nil
		case key := <-e.wake:
			e.sync(ctx, key)
		case x := <-e.exits:
			r := e.runs[x.key]
			if r == nil || r.uid != x.uid || r.pods[x.pod.index] != x.pod {
				continue
			}
			delete(r.pods, x.pod.index)
			switch {
			case x.pod.killed:
			case x.ok:
				r.succeeded[x.pod.index] = true
			default:
				r.failed++
				wait := e.backoff << min(r.failed-1, 10)
				r.nextStart = time.Now().Add(min(wait, 6*time.Minute))
				klog.Infof("job executor: pod %s failed (%d failures)", x.pod.name, r.failed)
			}
			e.sync(ctx, x.key)
		}
	}
}

// after wakes the Job up again after d.
func (e *executor) after(d time.Duration, key string) {
	time.AfterFunc(d, func() { e.wake <- key })
}

func (e *executor) sync(ctx context.Context, key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	job, err := e.jobs.Jobs(ns).Get(name)
	r := e.runs[key]
	if r != nil && (err != nil || r.uid != job.UID) {
		// Deleted: its pods go, as the garbage collector would delete them.
		r.killAll(grace(nil))
		delete(e.runs, key)
		r = nil
	}
	if err != nil || finished(job) {
		if r != nil {
			r.killAll(grace(job))
			delete(e.runs, key)
		}
		return
	}
	if r == nil {
		r = newJobRun(job)
		e.runs[key] = r
	}
	if job.Spec.Suspend != nil && *job.Spec.Suspend {
		r.killAll(grace(job))
		e.writeStatus(ctx, key, job, r, nil)
		return
	}
	now := time.Now()
	if d := job.Spec.ActiveDeadlineSeconds; d != nil {
		left := r.start.Add(time.Duration(*d) * time.Second).Sub(now)
		if left <= 0 {
			r.killAll(grace(job))
			e.writeStatus(ctx, key, job, r, &ending{batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"})
			return
		}
		e.after(left, key)
	}
	if job.Spec.BackoffLimit != nil && r.failed > *job.Spec.BackoffLimit {
		r.killAll(grace(job))
		e.writeStatus(ctx, key, job, r, &ending{batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"})
		return
	}
	if len(r.succeeded) >= int(completions(job)) {
		e.writeStatus(ctx, key, job, r, &ending{batchv1.JobComplete, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods"})
		return
	}
	if now.Before(r.nextStart) {
		e.after(r.nextStart.Sub(now), key)
	} else {
		for len(r.pods) < int(*job.Spec.Parallelism) {
			index, ok := r.pending(job)
			if !ok {
				break
			}
			if err := e.start(ctx, key, job, r, index); err != nil {
				// As a pod that cannot get its config or image: it waits, and is not a failure.
				klog.Warningf("job executor: %s: %v", key, err)
				e.event(ctx, job, "FailedCreatePod", err.Error())
				e.after(5*time.Second, key)
				break
			}
		}
	}
	e.writeStatus(ctx, key, job, r, nil)
}

func newJobRun(job *batchv1.Job) *jobRun {
	r := &jobRun{uid: job.UID, pods: map[int]*pod{}, succeeded: map[int]bool{}, failed: job.Status.Failed, start: metav1.Now()}
	if job.Status.StartTime != nil {
		r.start = *job.Status.StartTime
	}
	for _, part := range strings.Split(job.Status.CompletedIndexes, ",") {
		lo, hi, _ := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err2 != nil {
			b = a
		}
		for i := a; err1 == nil && i <= b; i++ {
			r.succeeded[i] = true
		}
	}
	for i := 0; !indexed(job) && i < int(job.Status.Succeeded); i++ {
		r.succeeded[-1-i] = true
	}
	return r
}

func indexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
}

func completions(job *batchv1.Job) int32 {
	if job.Spec.Completions == nil {
		return 1
	}
	return *job.Spec.Completions
}

func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func grace(job *batchv1.Job) time.Duration {
	if job != nil && job.Spec.Template.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*job.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// pending is the next completion index that neither runs nor succeeded.
func (r *jobRun) pending(job *batchv1.Job) (int, bool) {
	if !indexed(job) {
		if len(r.succeeded)+len(r.pods) >= int(completions(job)) {
			return 0, false
		}
		r.seq++
		return r.seq, true
	}
	for i := 0; i < int(completions(job)); i++ {
		if _, running := r.pods[i]; !running && !r.succeeded[i] {
			return i, true
		}
	}
	return 0, false
}

// killAll stops every pod: SIGTERM to its process group, SIGKILL after the grace period.
func (r *jobRun) killAll(grace time.Duration) {
	for _, p := range r.pods {
		p.killed = true
		pgid := -p.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		time.AfterFunc(grace, func() { _ = syscall.Kill(pgid, syscall.SIGKILL) })
	}
}

// start runs one pod of the Job: its first container, as a local process.
func (e *executor) start(ctx context.Context, key string, job *batchv1.Job, r *jobRun, index int) error {
	c := job.Spec.Template.Spec.Containers[0]
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(c.Command) == 0 {
		repo := c.Image
		if i := strings.LastIndex(repo, "@"); i >= 0 {
			repo = repo[:i]
		}
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		path, ok := e.entrypoints[repo]
		if !ok {
			return fmt.Errorf("image %q has no entrypoint here and the container sets no command; start the helpers with --entrypoint %s=PATH", c.Image, repo)
		}
		argv = append([]string{path}, c.Args...)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := job.Name + "-" + hex.EncodeToString(suffix)[:5]
	if indexed(job) {
		name = fmt.Sprintf("%s-%d-%s", job.Name, index, hex.EncodeToString(suffix)[:5])
	}
	env, err := e.env(ctx, job, c, name, index)
	if err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(e.logDir, job.Namespace+"_"+name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = e.logDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p := &pod{name: name, cmd: cmd, index: index}
	r.pods[index] = p
	klog.Infof("job executor: pod %s/%s started: %s", job.Namespace, name, strings.Join(argv, " "))
	go func() {
		err := cmd.Wait()
		out.Close()
		e.exits <- exit{key: key, uid: job.UID, pod: p, ok: err == nil}
	}()
	return nil
}

// env is the pod's environment: the container's env with its references resolved, the
// completion index, and the kubeconfig in place of a service account token.
func (e *executor) env(ctx context.Context, job *batchv1.Job, c corev1.Container, podName string, index int) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "KUBECONFIG=" + e.podKubeconfig}
	annotations := map[string]string{}
	labels := map[string]string{}
	for k, v := range job.Spec.Template.Annotations {
		annotations[k] = v
	}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	if indexed(job) {
		env = append(env, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", index))
		annotations[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(index)
		labels[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(index)
	}
	for _, v := range c.Env {
		value, present := v.Value, true
		if from := v.ValueFrom; from != nil {
			var err error
			switch {
			case from.FieldRef != nil:
				value, err = fieldValue(from.FieldRef.FieldPath, job, podName, labels, annotations)
			case from.SecretKeyRef != nil:
				value, present, err = e.keyValue(ctx, "Secret", job.Namespace, from.SecretKeyRef.Name, from.SecretKeyRef.Key, from.SecretKeyRef.Optional)
			case from.ConfigMapKeyRef != nil:
				value, present, err = e.keyValue(ctx, "ConfigMap", job.Namespace, from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key, from.ConfigMapKeyRef.Optional)
			default:
				err = fmt.Errorf("env %s: only fieldRef, secretKeyRef and configMapKeyRef are supported here", v.Name)
			}
			if err != nil {
				return nil, err
			}
		}
		// As the kubelet does, an optional key that is missing sets no variable at all.
		if present {
			env = append(env, v.Name+"="+value)
		}
	}
	return env, nil
}

func fieldValue(path string, job *batchv1.Job, podName string, labels, annotations map[string]string) (string, error) {
	quoted := func(prefix string) (string, bool) {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			return strings.TrimSuffix(rest, "']"), true
		}
		return "", false
	}
	switch path {
	case "metadata.name":
		return podName, nil
	case "metadata.namespace":
		return job.Namespace, nil
	case "spec.serviceAccountName":
		return job.Spec.Template.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return "localhost", nil
	case "status.podIP", "status.hostIP":
		return "127.0.0.1", nil
	}
	if k, ok := quoted("metadata.annotations"); ok {
		return annotations[k], nil
	}
	if k, ok := quoted("metadata.labels"); ok {
		return labels[k], nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported here", path)
}

// keyValue is the value of one key of a Secret or ConfigMap, and whether it is there; a key
// that is missing and not optional is an error.
func (e *executor) keyValue(ctx context.Context, kind, ns, name, key string, optional *bool) (string, bool, error) {
	var data map[string]string
	var err error
	if kind == "Secret" {
		var s *corev1.Secret
		if s, err = e.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
	} else {
		var m *corev1.ConfigMap
		if m, err = e.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			data = m.Data
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return "", false, err
	}
	value, ok := data[key]
	if !ok && (optional == nil || !*optional) {
		if err != nil {
			return "", false, fmt.Errorf("%s %q not found", kind, name)
		}
		return "", false, fmt.Errorf("couldn't find key %s in %s %s/%s", key, kind, ns, name)
	}
	return value, ok, nil
}

// ending is the last condition of a Job.
type ending struct {
	kind    batchv1.JobConditionType
	reason  string
	message string
}

// writeStatus writes the Job's status as the Job controller does, if it changed.
func (e *executor) writeStatus(ctx context.Context, key string, job *batchv1.Job, r *jobRun, end *ending) {
	st := job.Status.DeepCopy()
	active := int32(len(r.pods))
	zero := int32(0)
	st.Active, st.Ready, st.Terminating = active, &active, &zero
	st.Failed = r.failed
	st.Succeeded = int32(len(r.succeeded))
	if st.StartTime == nil {
		st.StartTime = &r.start
	}
	if st.UncountedTerminatedPods == nil {
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	if indexed(job) {
		st.CompletedIndexes = ranges(r.succeeded)
	}
	if end != nil {
		now := metav1.Now()
		first := batchv1.JobFailureTarget
		if end.kind == batchv1.JobComplete {
			first = batchv1.JobSuccessCriteriaMet
			st.CompletionTime = &now
		}
		for _, t := range []batchv1.JobConditionType{first, end.kind} {
			st.Conditions = append(st.Conditions, batchv1.JobCondition{
				Type: t, Status: corev1.ConditionTrue, Reason: end.reason, Message: end.message,
				LastProbeTime: now, LastTransitionTime: now,
			})
		}
	}
	if equality.Semantic.DeepEqual(st, &job.Status) {
		return
	}
	j := job.DeepCopy()
	j.Status = *st
	if _, err := e.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		// A newer Job is on its way through the watch; go again then, or soon.
		klog.V(2).Infof("job executor: status of %s: %v", key, err)
		e.after(200*time.Millisecond, key)
	} else if end != nil {
		klog.Infof("job executor: Job %s: %s (%s)", key, end.kind, end.reason)
	}
}

// ranges writes completed indexes as the Job controller does: "0,2-4".
func ranges(set map[int]bool) string {
	var ix []int
	for i := range set {
		ix = append(ix, i)
	}
	sort.Ints(ix)
	var parts []string
	for i := 0; i < len(ix); {
		j := i
		for j+1 < len(ix) && ix[j+1] == ix[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(ix[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ix[i], ix[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// event records a Warning event on the Job, as the Job controller and kubelet do.
func (e *executor) event(ctx context.Context, job *batchv1.Job, reason, message string) {
	now := metav1.Now()
	_, err := e.client.CoreV1().Events(job.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: job.Name + "."},
		InvolvedObject: corev1.ObjectReference{APIVersion: "batch/v1", Kind: "Job", Namespace: job.Namespace,
			Name: job.Name, UID: job.UID},
		Reason: reason, Message: message, Type: corev1.EventTypeWarning, Count: 1,
		FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "job-executor"},
	}, metav1.CreateOptions{})
	if err != nil {
		klog.V(2).Infof("job executor: event on %s/%s: %v", job.Namespace, job.Name, err)
	}
}
