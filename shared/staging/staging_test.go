package staging

import "testing"

func TestTransitions(t *testing.T) {
	allowed := map[[2]State]bool{
		{Created, DownloadSubmitted}: true, {DownloadSubmitted, DownloadSubmitted}: true,
		{DownloadSubmitted, Complete}: true, {Error, Created}: true,
		{Created, Error}: true, {DownloadSubmitted, Error}: true, {Complete, Error}: true, {Error, Error}: true,
	}
	for _, from := range States {
		for _, to := range States {
			if got := CanTransition(from, to); got != allowed[[2]State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %t", from, to, got)
			}
		}
	}
	for _, s := range States {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if State("running").Valid() || !Complete.Terminal() || !Error.Terminal() || Created.Terminal() || DownloadSubmitted.Terminal() {
		t.Error("Valid/Terminal")
	}
}

func TestUpdatePath(t *testing.T) {
	if got := UpdatePath("r1", "kbase", Complete); got != "/external_exec/refdata/r1/kbase/update/complete" {
		t.Errorf("UpdatePath = %s", got)
	}
	if got := UpdatePath("a/b", "c d", Error); got != "/external_exec/refdata/a%2Fb/c%20d/update/error" {
		t.Errorf("UpdatePath escapes = %s", got)
	}
	if JobID("r1") != "refdata-r1" {
		t.Error("JobID")
	}
}
