package args

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestMountPoints performs the attack of mount points the runtimes refuse (or that shadow
// their own mounts) being accepted at submit and failing only on the worker.
func TestMountPoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Parameters
		want []string
	}{
		{"proc", Parameters{InputMountPoint: "/proc"}, []string{
			"[input_mount_point]|value_error|Value error, Mount point /proc is in /proc, which the container runtime provides itself; choose a folder such as /data"}},
		{"sys kernel", Parameters{OutputMountPoint: "/sys/kernel"}, []string{
			"[output_mount_point]|value_error|Value error, Mount point /sys/kernel is in /sys, which the container runtime provides itself; choose a folder such as /data"}},
		{"dev shm", Parameters{RefdataMountPoint: "/dev/shm/"}, []string{
			"[refdata_mount_point]|value_error|Value error, Mount point /dev/shm/ is in /dev, which the container runtime provides itself; choose a folder such as /data"}},
		{"dot-dot into proc", Parameters{InputMountPoint: "/data/../proc/x"}, []string{
			"[input_mount_point]|value_error|Value error, Mount point /data/../proc/x (/proc/x once its '.' and '..' segments are resolved) is in /proc, which the container runtime provides itself; choose a folder such as /data"}},
		{"dot-dot to the root", Parameters{OutputMountPoint: "/out/.."}, []string{
			"[output_mount_point]|value_error|Value error, Mount point /out/.. (/ once its '.' and '..' segments are resolved) is the container's root folder; choose a folder such as /data"}},
		{"tmp", Parameters{OutputMountPoint: "/tmp/"}, []string{
			"[output_mount_point]|value_error|Value error, Mount point /tmp/ is the container's temporary folder /tmp, which the container runtime provides itself; choose a folder such as /data"}},
		{"same folder", Parameters{InputMountPoint: "/data", OutputMountPoint: "/data/"}, []string{
			"[output_mount_point]|value_error|Value error, The input_mount_point /data and the output_mount_point /data/ are the same folder or one is inside the other; mount them side by side, as /input_files and /output_files"}},
		{"output inside input", Parameters{InputMountPoint: "/data", OutputMountPoint: "/data/out", RefdataMountPoint: "/x/../data/out/ref"}, []string{
			"[output_mount_point]|value_error|Value error, The input_mount_point /data and the output_mount_point /data/out are the same folder or one is inside the other; mount them side by side, as /input_files and /output_files",
			"[refdata_mount_point]|value_error|Value error, The input_mount_point /data and the refdata_mount_point /x/../data/out/ref are the same folder or one is inside the other; mount them side by side, as /input_files and /output_files",
			"[refdata_mount_point]|value_error|Value error, The output_mount_point /data/out and the refdata_mount_point /x/../data/out/ref are the same folder or one is inside the other; mount them side by side, as /input_files and /output_files"}},
		// Resolved to an ordinary folder: accepted.
		{"proc then out", Parameters{InputMountPoint: "/proc/../etc/in", OutputMountPoint: "/devices", RefdataMountPoint: "/tmpdata"}, nil},
		{"names that start like reserved ones", Parameters{InputMountPoint: "/procs", OutputMountPoint: "/system", RefdataMountPoint: "/tmp/ref"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.p
			p.ApplyDefaults()
			got := problemSummary(p.Validate())
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestDecodeNormalisesMountPoints checks the stored (and assigned) mount points are the
// folders the container sees.
func TestDecodeNormalisesMountPoints(t *testing.T) {
	t.Parallel()
	p, ps := DecodeParameters([]byte(`{"input_mount_point":"/proc/../in/","output_mount_point":"/a/./out/","refdata_mount_point":"/r/"}`))
	if len(ps) != 0 {
		t.Fatal(problemSummary(ps))
	}
	if p.InputMountPoint != "/in" || p.OutputMountPoint != "/a/out" || p.RefdataMountPoint != "/r" {
		t.Fatalf("mount points %q %q %q", p.InputMountPoint, p.OutputMountPoint, p.RefdataMountPoint)
	}
}

// TestDecodeListLimits performs the attack of 100,000 arguments accepted at submit.
func TestDecodeListLimits(t *testing.T) {
	t.Parallel()
	many := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	_, ps := DecodeParameters([]byte(`{"args":` + many(100000, `"a"`) + `}`))
	if got := problemSummary(ps); !reflect.DeepEqual(got, []string{"[args]|too_long|List should have at most 10000 items after validation, not 100000"}) {
		t.Fatalf("100000 args: %q", got)
	}
	if _, ps := DecodeParameters([]byte(`{"args":` + many(MaxArgs, `"a"`) + `}`)); len(ps) != 0 {
		t.Fatalf("%d args: %q", MaxArgs, problemSummary(ps))
	}
	var env strings.Builder
	env.WriteString("{")
	for i := range MaxEnvironment + 1 {
		if i > 0 {
			env.WriteString(",")
		}
		fmt.Fprintf(&env, `"E%d":"x"`, i)
	}
	env.WriteString("}")
	_, ps = DecodeParameters([]byte(`{"environment":` + env.String() + `}`))
	if got := problemSummary(ps); !reflect.DeepEqual(got, []string{"[environment]|too_long|Dictionary should have at most 1000 items after validation, not 1001"}) {
		t.Fatalf("1001 variables: %q", got)
	}
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	ok := []string{"/bin/tool", "-i", "/input_files/a"}
	if err := CheckCommand(0, ok, []string{"A=b"}); err != nil {
		t.Fatal(err)
	}
	var ce *CommandError
	// A comma separated list of 10,000 files is one argument of about 400 KB.
	long := strings.TrimSuffix(strings.Repeat("/input_files/GCA_000008085.1_ASM808v1_genomic.fna,", 10000), ",")
	err := CheckCommand(3, []string{"/bin/tool", "-i", long}, nil)
	if !errors.As(err, &ce) || ce.Container != 3 || !strings.Contains(err.Error(), "argument 2 is 499999 bytes, more than the 131071 bytes") {
		t.Fatalf("long argument: %v", err)
	}
	err = CheckCommand(1, []string{"/bin/tool"}, []string{"FILES=" + long})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "environment variable FILES is 500005 bytes") {
		t.Fatalf("long variable: %v", err)
	}
	// 20,000 arguments of 60 bytes: each fits, all of them do not.
	argv := make([]string, 20000)
	for i := range argv {
		argv[i] = "/input_files/" + strings.Repeat("x", 47)
	}
	err = CheckCommand(0, argv, nil)
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "its 20000 arguments and 0 environment variables take 1380000 bytes, more than the 1048576 bytes") {
		t.Fatalf("many arguments: %v", err)
	}
}
