// Package launcherpb is the gRPC code generated from shared/launcher/proto/launcher.proto
// (see shared/launcher/generate.go). Only the launcher SDK uses it; it must not be edited by
// hand.
package launcherpb
