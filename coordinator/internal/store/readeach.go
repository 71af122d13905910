package store

import "sync"

// readEach calls read for every item, at most readers at once, and returns what each call
// returned, in the items' order: the point reads of the documents a pass or a list page found
// (the job of each work document, the view of each list entry), which the embedded FerretDB
// serves faster several at a time than one by one.
func readEach[T, R any](items []T, read func(T) (R, error)) ([]R, []error) {
	out := make([]R, len(items))
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	sem := make(chan struct{}, readers)
	for i := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = read(items[i])
		}()
	}
	wg.Wait()
	return out, errs
}
