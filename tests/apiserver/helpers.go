// `helpers`: the parts of a cluster that the test API server lacks, in one process.
//
//   - The Job executor plays the Job controller, the scheduler and the kubelet: it watches Jobs,
//     creates each Job's Pod objects, takes them through the phases, conditions and container
//     states a kubelet writes (and the failures a cluster has: a missing ServiceAccount, an
//     image it cannot pull, a missing Secret, a node selector no node matches), runs each pod's
//     first container as a local process (its command and args, with the pod's env), and
//     writes the Job's status the way the Job controller does.
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
	"runtime"
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
	client        kubernetes.Interface
	jobs          batchlisters.JobLister
	kubeconfig    string
	podKubeconfig string
	logDir        string
	entrypoints   map[string]string
	backoff       time.Duration

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

// pod is one pod of a Job: its object as last written, and its process once it runs.
type pod struct {
	name   string
	index  int
	obj    *corev1.Pod
	cmd    *exec.Cmd // nil until its container runs
	killed bool
	// blocked is why its container does not run yet: Unschedulable, or a container's waiting
	// reason (ErrImagePull, ImagePullBackOff, CreateContainerConfigError).
	blocked string
}

type exit struct {
	key  string
	uid  types.UID
	pod  *pod
	ok   bool
	code int
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
				e.killAll(ctx, r, 0)
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
				e.deletePod(ctx, x.pod)
			case x.ok:
				e.finished(ctx, x.pod, true, 0)
				r.succeeded[x.pod.index] = true
			default:
				e.finished(ctx, x.pod, false, x.code)
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
		// Deleted: its pods' processes stop; the garbage collector deletes the pods.
		r.stop(grace(nil))
		delete(e.runs, key)
		r = nil
	}
	if err != nil || finished(job) {
		if r != nil {
			e.killAll(ctx, r, grace(job))
			delete(e.runs, key)
		}
		return
	}
	if r == nil {
		r = newJobRun(job)
		e.runs[key] = r
	}
	if job.Spec.Suspend != nil && *job.Spec.Suspend {
		e.killAll(ctx, r, grace(job))
		e.writeStatus(ctx, key, job, r, nil)
		return
	}
	now := time.Now()
	if d := job.Spec.ActiveDeadlineSeconds; d != nil {
		left := r.start.Add(time.Duration(*d) * time.Second).Sub(now)
		if left <= 0 {
			e.killAll(ctx, r, grace(job))
			e.writeStatus(ctx, key, job, r, &ending{batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"})
			return
		}
		e.after(left, key)
	}
	if job.Spec.BackoffLimit != nil && r.failed > *job.Spec.BackoffLimit {
		e.killAll(ctx, r, grace(job))
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
			if !e.create(ctx, key, job, r, index) {
				// Refused: tried again later, as the Job controller does; not a failure.
				e.after(5*time.Second, key)
				break
			}
		}
	}
	for _, p := range r.pods {
		e.advance(ctx, key, job, p)
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

// killAll stops every pod of a Job that failed or was suspended, as the Job controller
// deletes its active pods: a pod that never ran is deleted now, one that runs once its
// process has ended.
func (e *executor) killAll(ctx context.Context, r *jobRun, grace time.Duration) {
	for index, p := range r.pods {
		if p.cmd == nil && !p.killed {
			e.deletePod(ctx, p)
			delete(r.pods, index)
		}
	}
	r.stop(grace)
}

// stop stops every pod's process: SIGTERM to its process group, SIGKILL after the grace
// period.
func (r *jobRun) stop(grace time.Duration) {
	for _, p := range r.pods {
		p.killed = true
		if p.cmd == nil {
			continue
		}
		pgid := -p.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		time.AfterFunc(grace, func() { _ = syscall.Kill(pgid, syscall.SIGKILL) })
	}
}

// node is the one node of the harness: its name and labels, against which a pod's
// nodeSelector is matched.
var node = struct {
	name   string
	labels map[string]string
}{"localhost", map[string]string{
	corev1.LabelHostname: "localhost", corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
}}

// create creates one pod of the Job, as the Job controller does, and takes it as far as it
// goes (advance). A pod the API server would refuse (its ServiceAccount is missing, as the
// ServiceAccount admission plugin checks) is not created: the Job gets a FailedCreate event,
// and false is returned.
func (e *executor) create(ctx context.Context, key string, job *batchv1.Job, r *jobRun, index int) bool {
	tmpl := job.Spec.Template
	prefix := job.Name + "-"
	if indexed(job) {
		prefix = fmt.Sprintf("%s-%d-", job.Name, index)
	}
	if sa := tmpl.Spec.ServiceAccountName; sa != "" && sa != "default" {
		_, err := e.client.CoreV1().ServiceAccounts(job.Namespace).Get(ctx, sa, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			e.event(ctx, jobRef(job), "job-controller", corev1.EventTypeWarning, "FailedCreate", fmt.Sprintf(
				"Error creating: pods %q is forbidden: error looking up service account %s/%s: serviceaccount %q not found",
				prefix, job.Namespace, sa, sa))
			return false
		}
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: prefix + hex.EncodeToString(suffix)[:5], Namespace: job.Namespace,
			Labels: map[string]string{}, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	for k, v := range tmpl.Labels {
		obj.Labels[k] = v
	}
	for k, v := range tmpl.Annotations {
		obj.Annotations[k] = v
	}
	if indexed(job) {
		obj.Labels[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(index)
		obj.Annotations[batchv1.JobCompletionIndexAnnotation] = strconv.Itoa(index)
	}
	created, err := e.client.CoreV1().Pods(job.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		e.event(ctx, jobRef(job), "job-controller", corev1.EventTypeWarning, "FailedCreate", "Error creating: "+err.Error())
		return false
	}
	e.event(ctx, jobRef(job), "job-controller", corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: "+created.Name)
	p := &pod{name: created.Name, index: index, obj: created}
	r.pods[index] = p
	e.advance(ctx, key, job, p)
	return true
}

// advance takes a pod that does not run yet one step further, as the scheduler and the
// kubelet would: it is scheduled (or stays Unschedulable), its image is pulled (an image
// without an entrypoint here stays ErrImagePull, then ImagePullBackOff), its env is resolved
// (a missing Secret or key is CreateContainerConfigError, tried again every 2s), and its first
// container runs as a local process.
func (e *executor) advance(ctx context.Context, key string, job *batchv1.Job, p *pod) {
	if p.cmd != nil || p.killed {
		return
	}
	c := p.obj.Spec.Containers[0]
	if p.obj.Spec.NodeName == "" {
		for k, v := range p.obj.Spec.NodeSelector {
			if node.labels[k] != v {
				if p.blocked != "Unschedulable" {
					msg := "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. " +
						"preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
					p.blocked = "Unschedulable"
					e.writePod(ctx, p, func(st *corev1.PodStatus) {
						setPodCondition(st, corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, msg)
					})
					e.event(ctx, podRef(p.obj, ""), "default-scheduler", corev1.EventTypeWarning, "FailedScheduling", msg)
				}
				return
			}
		}
		bound := p.obj.DeepCopy()
		bound.Spec.NodeName = node.name
		updated, err := e.client.CoreV1().Pods(bound.Namespace).Update(ctx, bound, metav1.UpdateOptions{})
		if err != nil {
			klog.Warningf("job executor: binding pod %s: %v", p.name, err)
			e.after(time.Second, key)
			return
		}
		p.obj = updated
		e.writePod(ctx, p, func(st *corev1.PodStatus) {
			setPodCondition(st, corev1.PodScheduled, corev1.ConditionTrue, "", "")
			setPodCondition(st, corev1.PodInitialized, corev1.ConditionTrue, "", "")
			st.HostIP, st.HostIPs = "127.0.0.1", []corev1.HostIP{{IP: "127.0.0.1"}}
			now := metav1.Now()
			st.StartTime = &now
		})
		e.event(ctx, podRef(p.obj, ""), "default-scheduler", corev1.EventTypeNormal, "Scheduled",
			fmt.Sprintf("Successfully assigned %s/%s to %s", p.obj.Namespace, p.name, node.name))
	}
	argv, pulled := e.argv(c)
	if !pulled {
		switch p.blocked {
		case "":
			msg := fmt.Sprintf("failed to pull and unpack image %q: failed to resolve reference %q: pull access denied, "+
				"repository does not exist or may require authorization: server message: insufficient_scope: "+
				"authorization failed", c.Image, c.Image)
			e.waiting(ctx, p, "ErrImagePull", msg)
			e.event(ctx, podRef(p.obj, c.Name), "kubelet", corev1.EventTypeWarning, "Failed",
				fmt.Sprintf("Failed to pull image %q: %s", c.Image, msg))
			e.after(2*time.Second, key)
		case "ErrImagePull":
			e.waiting(ctx, p, "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", c.Image))
			e.event(ctx, podRef(p.obj, c.Name), "kubelet", corev1.EventTypeNormal, "BackOff",
				fmt.Sprintf("Back-off pulling image %q", c.Image))
		}
		return
	}
	env, err := e.env(ctx, p.obj, c)
	if err != nil {
		if p.blocked != "CreateContainerConfigError" || p.obj.Status.ContainerStatuses[0].State.Waiting.Message != err.Error() {
			e.waiting(ctx, p, "CreateContainerConfigError", err.Error())
			e.event(ctx, podRef(p.obj, c.Name), "kubelet", corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		}
		e.after(2*time.Second, key)
		return
	}
	if err := e.runPod(ctx, key, job, p, argv, env); err != nil {
		klog.Warningf("job executor: %s: %v", key, err)
		e.waiting(ctx, p, "RunContainerError", err.Error())
		e.after(5*time.Second, key)
	}
}

// argv is the command line of a container, and false when its image has no entrypoint here
// and it sets no command: the image cannot be pulled.
func (e *executor) argv(c corev1.Container) ([]string, bool) {
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(c.Command) > 0 {
		return argv, true
	}
	repo := c.Image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	path, ok := e.entrypoints[repo]
	return append([]string{path}, c.Args...), ok
}

// runPod starts the pod's first container as a local process, and writes the pod Running.
func (e *executor) runPod(ctx context.Context, key string, job *batchv1.Job, p *pod, argv, env []string) error {
	out, err := os.Create(filepath.Join(e.logDir, job.Namespace+"_"+p.name+".log"))
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
	p.cmd, p.blocked = cmd, ""
	c := p.obj.Spec.Containers[0]
	now := metav1.Now()
	e.writePod(ctx, p, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodRunning
		st.PodIP, st.PodIPs = "127.0.0.1", []corev1.PodIP{{IP: "127.0.0.1"}}
		for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.ContainersReady, corev1.PodReady} {
			setPodCondition(st, t, corev1.ConditionTrue, "", "")
		}
		yes := true
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: fmt.Sprintf("local://%d", cmd.Process.Pid),
			Ready: true, Started: &yes, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}}
	})
	e.event(ctx, podRef(p.obj, c.Name), "kubelet", corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	klog.Infof("job executor: pod %s/%s started: %s", job.Namespace, p.name, strings.Join(argv, " "))
	go func() {
		err := cmd.Wait()
		out.Close()
		code := 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		} else if err != nil {
			code = 128
		}
		e.exits <- exit{key: key, uid: job.UID, pod: p, ok: err == nil, code: code}
	}()
	return nil
}

// waiting writes the pod's first container as waiting, for reason.
func (e *executor) waiting(ctx context.Context, p *pod, reason, message string) {
	p.blocked = reason
	c := p.obj.Spec.Containers[0]
	no := false
	e.writePod(ctx, p, func(st *corev1.PodStatus) {
		setPodCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady",
			fmt.Sprintf("containers with unready status: [%s]", c.Name))
		setPodCondition(st, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady",
			fmt.Sprintf("containers with unready status: [%s]", c.Name))
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, Started: &no,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
		}}
	})
}

// finished writes the pod of a process that ended: Succeeded or Failed, with its exit code.
func (e *executor) finished(ctx context.Context, p *pod, ok bool, code int) {
	c := p.obj.Spec.Containers[0]
	phase, reason, why := corev1.PodSucceeded, "Completed", "PodCompleted"
	if !ok {
		phase, reason, why = corev1.PodFailed, "Error", "PodFailed"
	}
	now := metav1.Now()
	e.writePod(ctx, p, func(st *corev1.PodStatus) {
		st.Phase = phase
		for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.ContainersReady, corev1.PodReady} {
			setPodCondition(st, t, corev1.ConditionFalse, why, "")
		}
		var started metav1.Time
		if len(st.ContainerStatuses) > 0 && st.ContainerStatuses[0].State.Running != nil {
			started = st.ContainerStatuses[0].State.Running.StartedAt
		}
		no := false
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Started: &no,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reason, StartedAt: started, FinishedAt: now}},
		}}
	})
}

// writePod changes the pod's status with change, and writes it.
func (e *executor) writePod(ctx context.Context, p *pod, change func(*corev1.PodStatus)) {
	obj := p.obj.DeepCopy()
	change(&obj.Status)
	updated, err := e.client.CoreV1().Pods(obj.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	if err != nil {
		klog.V(2).Infof("job executor: status of pod %s: %v", p.name, err)
		return
	}
	p.obj = updated
}

// deletePod deletes the pod object, as the Job controller does with the active pods of a Job
// that failed or was suspended.
func (e *executor) deletePod(ctx context.Context, p *pod) {
	err := e.client.CoreV1().Pods(p.obj.Namespace).Delete(ctx, p.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		klog.V(2).Infof("job executor: deleting pod %s: %v", p.name, err)
	}
}

func setPodCondition(st *corev1.PodStatus, t corev1.PodConditionType, status corev1.ConditionStatus, reason, message string) {
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == t {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = status, reason, message
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, Reason: reason,
		Message: message, LastTransitionTime: now})
}

func jobRef(job *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "batch/v1", Kind: "Job", Namespace: job.Namespace, Name: job.Name, UID: job.UID}
}

func podRef(p *corev1.Pod, container string) corev1.ObjectReference {
	r := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}
	if container != "" {
		r.FieldPath = fmt.Sprintf("spec.containers{%s}", container)
	}
	return r
}

// env is the pod's environment: the container's env with its references resolved, the
// completion index, and the kubeconfig in place of a service account token.
func (e *executor) env(ctx context.Context, p *corev1.Pod, c corev1.Container) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "KUBECONFIG=" + e.podKubeconfig}
	if index, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]; ok {
		env = append(env, "JOB_COMPLETION_INDEX="+index)
	}
	for _, v := range c.Env {
		value, present := v.Value, true
		if from := v.ValueFrom; from != nil {
			var err error
			switch {
			case from.FieldRef != nil:
				value, err = fieldValue(from.FieldRef.FieldPath, p)
			case from.SecretKeyRef != nil:
				value, present, err = e.keyValue(ctx, "Secret", p.Namespace, from.SecretKeyRef.Name, from.SecretKeyRef.Key, from.SecretKeyRef.Optional)
			case from.ConfigMapKeyRef != nil:
				value, present, err = e.keyValue(ctx, "ConfigMap", p.Namespace, from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key, from.ConfigMapKeyRef.Optional)
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

func fieldValue(path string, p *corev1.Pod) (string, error) {
	quoted := func(prefix string) (string, bool) {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
			return strings.TrimSuffix(rest, "']"), true
		}
		return "", false
	}
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return p.Spec.NodeName, nil
	case "status.podIP", "status.hostIP":
		return "127.0.0.1", nil
	}
	if k, ok := quoted("metadata.annotations"); ok {
		return p.Annotations[k], nil
	}
	if k, ok := quoted("metadata.labels"); ok {
		return p.Labels[k], nil
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
			return "", false, fmt.Errorf("%s %q not found", strings.ToLower(kind), name)
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
	active, ready := int32(len(r.pods)), int32(0)
	for _, p := range r.pods {
		if p.cmd != nil {
			ready++
		}
	}
	zero := int32(0)
	st.Active, st.Ready, st.Terminating = active, &ready, &zero
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

// event records an event on an object, as the Job controller, the scheduler and the kubelet do.
func (e *executor) event(ctx context.Context, on corev1.ObjectReference, component, kind, reason, message string) {
	now := metav1.Now()
	_, err := e.client.CoreV1().Events(on.Namespace).Create(ctx, &corev1.Event{
		// Named as client-go's recorder names them (a generateName may not end in a dot).
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", on.Name, now.UnixNano())},
		InvolvedObject: on, Reason: reason, Message: message, Type: kind, Count: 1,
		FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: component},
	}, metav1.CreateOptions{})
	if err != nil {
		klog.V(2).Infof("job executor: event on %s %s/%s: %v", on.Kind, on.Namespace, on.Name, err)
	}
}
