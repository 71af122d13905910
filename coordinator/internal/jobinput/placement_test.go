package jobinput

import (
	"reflect"
	"testing"

	"github.com/kbase/cts/shared/args"
)

func files(paths ...string) []InputFile {
	out := make([]InputFile, len(paths))
	for i, p := range paths {
		out[i] = InputFile{File: p}
	}
	return out
}

func TestFilesPerContainer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		files, containers int
		want              [][]int
	}{
		{1, 1, [][]int{{0}}},
		{4, 1, [][]int{{0, 1, 2, 3}}},
		{4, 4, [][]int{{0}, {1}, {2}, {3}}},
		{4, 3, [][]int{{0, 1}, {2}, {3}}},
		{7, 3, [][]int{{0, 1, 2}, {3, 4}, {5, 6}}},
		{8, 3, [][]int{{0, 1, 2}, {3, 4, 5}, {6, 7}}},
		{3, 0, [][]int{{0, 1, 2}}},
	}
	for _, tc := range tests {
		ji := &JobInput{NumContainers: tc.containers, InputFiles: make([]InputFile, tc.files)}
		if got := ji.FilesPerContainer(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d files / %d containers = %v, want %v", tc.files, tc.containers, got, tc.want)
		}
	}
}

func TestPlacements(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		roots   []string
		files   []InputFile
		want    []string
		wantErr []string
	}{
		{name: "root strips a prefix", roots: []string{"bucket/dir1"}, files: files("bucket/dir1/dir2/file1"),
			want: []string{"dir2/file1"}},
		{name: "empty root keeps the bucket", roots: []string{""}, files: files("bucket/file1"),
			want: []string{"bucket/file1"}},
		{name: "no root: base name", files: files("bucket/a/b/file1", "bucket/file2"),
			want: []string{"file1", "file2"}},
		{name: "longest root wins", roots: []string{"", "bucket", "bucket/a", "bucket/a/b"},
			files: files("bucket/a/b/c/f", "bucket/a/x", "bucket/y", "other/z"),
			want:  []string{"c/f", "x", "y", "other/z"}},
		{name: "root is a segment prefix only", roots: []string{"bucket/di"}, files: files("bucket/dir/f"),
			want: []string{"f"}},
		{name: "root equal to the file is not used", roots: []string{"bucket/dir/f"}, files: files("bucket/dir/f"),
			want: []string{"f"}},
		{name: "root with trailing slash", roots: []string{"bucket/dir/"}, files: files("bucket/dir/sub/f"),
			want: []string{"sub/f"}},
		{name: "same base name collides", files: files("bucket/a/f", "bucket/b/g", "bucket/c/f"),
			wantErr: []string{"[body input_files 2]|value_error|Value error, Input files 'bucket/a/f' at index 0 and 'bucket/c/f' at index 2 collide at path '/input_files/f'"}},
		{name: "roots avoid the collision", roots: []string{"bucket"}, files: files("bucket/a/f", "bucket/c/f"),
			want: []string{"a/f", "c/f"}},
		{name: "file where a directory is needed", roots: []string{"bucket"}, files: files("bucket/a", "bucket/a/f"),
			wantErr: []string{"[body input_files 1]|value_error|Value error, Input files 'bucket/a' at index 0 and 'bucket/a/f' at index 1 collide at path '/input_files/a'"}},
		{name: "directory where a file is needed", roots: []string{"bucket"}, files: files("bucket/a/f", "bucket/a"),
			wantErr: []string{"[body input_files 1]|value_error|Value error, Input files 'bucket/a/f' at index 0 and 'bucket/a' at index 1 collide at path '/input_files/a'"}},
		{name: "dot segments refused", roots: []string{""}, files: files("bucket/../x", "bucket/ok", "bucket/dir/"),
			wantErr: []string{
				"[body input_files 0]|value_error|Value error, Input file 'bucket/../x' at index 0 would be placed at '/input_files/bucket/../x', which has an empty, '.' or '..' path segment",
				"[body input_files 2]|value_error|Value error, Input file 'bucket/dir/' at index 2 would be placed at '/input_files/bucket/dir/', which has an empty, '.' or '..' path segment",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ji := &JobInput{InputRoots: tc.roots, InputFiles: tc.files,
				Params: args.Parameters{InputMountPoint: "/input_files"}}
			got, err := ji.Placements()
			if tc.wantErr != nil {
				if d := details(t, err); !reflect.DeepEqual(d, tc.wantErr) {
					t.Errorf("details:\n got %q\nwant %q", d, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Placements: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Placements = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestContainerPaths(t *testing.T) {
	t.Parallel()
	ji := &JobInput{InputRoots: []string{"bucket/in"}, InputFiles: files("bucket/in/a/f1", "bucket/x/f2"),
		Params: args.Parameters{InputMountPoint: "/data/"}}
	got, err := ji.ContainerPaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/data/a/f1", "/data/f2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ContainerPaths = %q, want %q", got, want)
	}
	// The paths feed argument generation per container.
	ji.NumContainers = 2
	ji.Params.Args = []args.Arg{{Param: &args.Parameter{Type: args.TypeInputFiles, InputFilesFormat: args.CommaSeparatedList}}}
	for c, idx := range ji.FilesPerContainer() {
		var mine []string
		for _, i := range idx {
			mine = append(mine, got[i])
		}
		cmd, _, err := args.Generate([]string{"prog"}, ji.Params, c, mine)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"prog", got[c]}; !reflect.DeepEqual(cmd, want) {
			t.Errorf("container %d cmd = %q, want %q", c, cmd, want)
		}
	}
}
