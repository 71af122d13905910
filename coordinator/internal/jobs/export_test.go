package jobs

import "context"

// SubmitPass runs one pass of the submitter loop (what RunSubmitter does on every tick or
// poke): created jobs go to their launcher, canceling jobs are finished.
func (s *Service) SubmitPass(ctx context.Context) error { return s.submitCreated(ctx) }
