package api

import (
	"net/http"

	"github.com/kbase/cts/coordinator/wire"
)

// Auth levels of the routes.
const (
	authNone          = "none"
	authUser          = "user"
	authOwner         = "owner"
	authAdmin         = "admin"
	authAdminExecutor = "admin or executor"
	authExecutor      = "executor"
	// authStager is a staging agent's credential, or the refdata service role.
	authStager = "stager or refdata service"
	// authOwnerAdmin is the job's owner or any admin (live logs, progress).
	authOwnerAdmin = "owner or admin"
)

// liveSummary describes a live log route.
func liveSummary(stream string) string {
	return "Follow a container's standard " + stream + " live, as server-sent events: first the recent lines, then each " +
		"line as the agent sends it (`data: <line>`), a `: heartbeat` comment every 15 seconds, and `event: end` with " +
		"`{\"state\": ...}` once the job has ended. Lines are best effort (the complete log is stored when the container " +
		"ends) and are kept by the coordinator replica the agent is connected to."
}

// route is one REST route: what the mux serves and what the OpenAPI document says of it.
// Request and Response are values of the Go types the handler decodes and encodes.
type route struct {
	Method  string
	Pattern string // http.ServeMux pattern; {x...} is a path-typed parameter
	Tag     string
	Summary string
	Auth    string
	Status  int // success status
	// ContentType of a non-JSON success response (logs).
	ContentType string
	Request     any
	Response    any
	Params      []param
	// Errors are the error statuses the handler answers beyond those its shape implies (see
	// routeErrors): what its business rules can refuse with.
	Errors  []int
	handler http.HandlerFunc
}

// param documents a path or query parameter.
type param struct {
	In, Name, Type, Description string
	Required                    bool
	Enum                        []string
}

var (
	pJobID = param{In: "path", Name: "job_id", Type: "string", Required: true, Description: `The job ID: ^[\w-]+$, 1 to 50 characters.`}
	pImage = param{In: "path", Name: "image_id", Type: "string", Required: true,
		Description: "An image name with a tag or a digest (name:tag, name@sha256:...), 1 to 1000 characters."}
	pContainer = param{In: "path", Name: "container_num", Type: "integer", Required: true, Description: "The container number, from 0."}
	pSeek      = param{In: "query", Name: "seek", Type: "integer", Description: "The byte offset to start at (≥ 0)."}
	pLength    = param{In: "query", Name: "length", Type: "integer", Description: "The number of bytes to return (≥ 1)."}
	pState     = param{In: "query", Name: "state", Type: "string", Description: "The job's current state."}
	pAfter     = param{In: "query", Name: "after", Type: "date-time",
		Description: "Only jobs whose last transition is at or after this time (ISO 8601 with a time zone)."}
	pBefore = param{In: "query", Name: "before", Type: "date-time",
		Description: "Only jobs whose last transition is before this time (ISO 8601 with a time zone)."}
	pLimit     = param{In: "query", Name: "limit", Type: "integer", Description: "At most this many jobs, 1 to 1000 (default 1000)."}
	pListImage = param{In: "query", Name: "image", Type: "string",
		Description: "Only jobs that ran this registered image: a name (any tag or digest), name:tag or name@sha256:... " +
			"(an addition to the CTS API). Names are normalised as at registration (ubuntu is docker.io/library/ubuntu)."}
)

// Statuses that business rules answer with (route.Errors).
var (
	// s3Errors: a folder or bucket the user may not read (the site's access rules, or S3
	// itself refusing), or one that does not exist.
	s3Errors = []int{http.StatusForbidden, http.StatusNotFound}
	// admissionErrors: besides S3's, an image that is not registered.
	admissionErrors = s3Errors
)

func (s *Server) routeTable() []route {
	cluster := param{In: "query", Name: "cluster", Type: "string", Description: "The job's site.", Enum: s.siteNames()}
	site := param{In: "path", Name: "site", Type: "string", Required: true, Description: "The site.", Enum: s.siteNames()}
	state := pState
	state.Enum = stateNames()
	listParams := []param{cluster, state, pListImage, pAfter, pBefore, pLimit}
	notJAWS := "Answers 400 with app code 100000: no site of this service uses NERSC or JAWS."
	return []route{
		{Method: "GET", Pattern: "/{$}", Tag: "General", Summary: "Service information", Auth: authNone, Status: 200, Response: wire.ServiceInfo{}, handler: s.root},
		{Method: "GET", Pattern: "/whoami", Tag: "General", Summary: "Who the token belongs to", Auth: authUser, Status: 200, Response: wire.WhoAmI{}, handler: s.whoami},
		{Method: "GET", Pattern: "/sites", Tag: "General", Summary: "The compute sites and their limits", Auth: authNone, Status: 200, Response: wire.Sites{}, handler: s.sites},

		{Method: "GET", Pattern: "/jobs", Tag: "Jobs", Summary: "List your jobs, newest first", Auth: authUser, Status: 200,
			Response: wire.Jobs{}, Params: listParams, handler: s.listJobs},
		{Method: "POST", Pattern: "/jobs", Tag: "Jobs", Summary: "Submit a job", Auth: authUser, Status: 200,
			Request: wire.JobInput{}, Response: wire.SubmitJobResponse{}, Errors: admissionErrors, handler: s.submit},
		{Method: "POST", Pattern: "/jobs/preview", Tag: "Jobs", Summary: previewSummary, Auth: authUser, Status: 200,
			Request: wire.JobInput{}, Response: wire.JobPreview{}, Errors: admissionErrors, handler: s.preview},
		{Method: "GET", Pattern: "/jobs/{job_id}", Tag: "Jobs", Summary: "A job", Auth: authOwner, Status: 200,
			Response: wire.Job{}, Params: []param{pJobID}, handler: s.getJob},
		{Method: "GET", Pattern: "/jobs/{job_id}/status", Tag: "Jobs", Summary: "A job's state", Auth: authOwner, Status: 200,
			Response: wire.JobStatus{}, Params: []param{pJobID}, handler: s.getStatus},
		{Method: "GET", Pattern: "/jobs/{job_id}/exit_codes", Tag: "Jobs", Summary: "The exit code of every container", Auth: authOwner, Status: 200,
			Response: wire.ExitCodes{}, Params: []param{pJobID}, handler: s.exitCodes},
		{Method: "GET", Pattern: "/jobs/{job_id}/log/{container_num}/stdout", Tag: "Jobs", Summary: "A container's standard output",
			Auth: authOwner, Status: 200, ContentType: "text/plain; charset=utf-8", Params: []param{pJobID, pContainer, pSeek, pLength},
			handler: s.containerLog("stdout")},
		{Method: "GET", Pattern: "/jobs/{job_id}/log/{container_num}/stderr", Tag: "Jobs", Summary: "A container's standard error",
			Auth: authOwner, Status: 200, ContentType: "text/plain; charset=utf-8", Params: []param{pJobID, pContainer, pSeek, pLength},
			handler: s.containerLog("stderr")},
		{Method: "GET", Pattern: "/jobs/{job_id}/log/{container_num}/stdout/live", Tag: "Jobs", Summary: liveSummary("output"),
			Auth: authOwnerAdmin, Status: 200, ContentType: eventStream, Params: []param{pJobID, pContainer}, handler: s.liveLog("stdout")},
		{Method: "GET", Pattern: "/jobs/{job_id}/log/{container_num}/stderr/live", Tag: "Jobs", Summary: liveSummary("error"),
			Auth: authOwnerAdmin, Status: 200, ContentType: eventStream, Params: []param{pJobID, pContainer}, handler: s.liveLog("stderr")},
		{Method: "GET", Pattern: "/jobs/{job_id}/progress", Tag: "Jobs", Summary: progressSummary, Auth: authOwnerAdmin, Status: 200,
			Response: wire.JobProgress{}, Params: []param{pJobID}, handler: s.jobProgress},
		{Method: "PUT", Pattern: "/jobs/{job_id}/cancel", Tag: "Jobs", Summary: "Cancel a job", Auth: authOwner, Status: 204,
			Params: []param{pJobID}, handler: s.cancel},

		{Method: "GET", Pattern: "/s3/list", Tag: "Jobs", Summary: s3ListSummary, Auth: authUser, Status: 200,
			Response: wire.S3Listing{}, Params: s3ListParams, Errors: s3Errors, handler: s.s3List},

		{Method: "GET", Pattern: "/images", Tag: "Images", Summary: "The registered images, by name and digest, a page at a time", Auth: authNone, Status: 200,
			Response: wire.Images{}, Params: []param{
				{In: "query", Name: "limit", Type: "integer", Description: "At most this many images, 1 to 1000 (default 1000)."},
				{In: "query", Name: "skip", Type: "integer", Description: "Skip this many images first (default 0): the next page starts at skip + limit."}},
			handler: s.listImages},
		{Method: "GET", Pattern: "/images/{image_id...}", Tag: "Images", Summary: "A registered image", Auth: authNone, Status: 200,
			Response: wire.Image{}, Params: []param{pImage}, handler: s.getImage},
		{Method: "POST", Pattern: "/admin/images/{image_id...}", Tag: "Admin", Summary: "Register an image", Auth: authAdmin, Status: 200,
			Request: wire.ImageRegistration{}, Response: wire.Image{}, Params: []param{pImage,
				{In: "query", Name: "refdata_id", Type: "string", Description: `Reference data the image needs: ^[\w-]+$, 1 to 50 characters.`},
				{In: "query", Name: "default_refdata_mount_point", Type: "string", Description: "Where jobs see the reference data unless they say otherwise (an absolute path)."}},
			handler: s.registerImage},
		{Method: "DELETE", Pattern: "/admin/images/{image_id...}", Tag: "Admin", Summary: "Delete an image", Auth: authAdmin, Status: 204,
			Params: []param{pImage}, handler: s.deleteImage},

		{Method: "GET", Pattern: "/admin/jobs", Tag: "Admin", Summary: "List any user's jobs, newest first", Auth: authAdmin, Status: 200,
			Response: wire.Jobs{}, handler: s.adminListJobs,
			Params: append([]param{{In: "query", Name: "user", Type: "string", Description: "Only this user's jobs: ^[a-z][a-z\\d_]*$, 1 to 100 characters; the user must exist."}}, listParams...)},
		{Method: "GET", Pattern: "/admin/jobs/{job_id}", Tag: "Admin", Summary: "A job with its admin details", Auth: authAdminExecutor, Status: 200,
			Response: wire.AdminJob{}, Params: []param{pJobID}, handler: s.adminGetJob},
		{Method: "GET", Pattern: "/admin/jobs/{job_id}/exit_codes", Tag: "Admin", Summary: "The exit code of every container", Auth: authAdmin, Status: 200,
			Response: wire.ExitCodes{}, Params: []param{pJobID}, handler: s.adminExitCodes},
		{Method: "GET", Pattern: "/admin/jobs/{job_id}/container", Tag: "Admin", Summary: "Every container (sub-job) of a job", Auth: authAdmin, Status: 200,
			Response: wire.SubJobs{}, Params: []param{pJobID}, handler: s.adminSubJobs},
		{Method: "GET", Pattern: "/jobs/{job_id}/containers", Tag: "Jobs", Summary: "The states, exit codes and outputs of your job's containers (an addition to the CTS API)", Auth: authOwner, Status: 200,
			Response: wire.SubJobs{}, Params: []param{pJobID}, handler: s.subJobs},
		{Method: "GET", Pattern: "/admin/jobs/{job_id}/container/{container_num}", Tag: "Admin", Summary: "One container (sub-job) of a job",
			Auth: authAdmin, Status: 200, Response: wire.SubJob{}, Params: []param{pJobID, pContainer}, handler: s.adminSubJob},
		{Method: "GET", Pattern: "/admin/jobs/{job_id}/runner_status", Tag: "Admin", Summary: "The site launcher's raw record of a container",
			Auth: authAdmin, Status: 200, Response: map[string]any{}, handler: s.runnerStatus,
			Params: []param{pJobID, {In: "query", Name: "container_number", Type: "integer", Description: "The container, from 0 (default 0)."}}},
		{Method: "PUT", Pattern: "/admin/jobs/{job_id}/cancel", Tag: "Admin", Summary: "Cancel any job", Auth: authAdmin, Status: 204,
			Params: []param{pJobID}, handler: s.adminCancel},
		{Method: "PUT", Pattern: "/admin/jobs/{job_id}/meta", Tag: "Admin", Summary: "Set and unset admin metadata keys", Auth: authAdmin, Status: 204,
			Request: wire.UpdateAdminMeta{}, Params: []param{pJobID}, handler: s.adminMeta},
		{Method: "PUT", Pattern: "/admin/jobs/{job_id}/notify", Tag: "Admin", Summary: "Re-send the Kafka notification of a transition",
			Auth: authAdmin, Status: 204, handler: s.adminNotify,
			Params: []param{pJobID, {In: "query", Name: "state", Type: "string", Required: true, Enum: stateNames(), Description: "The state whose (last) transition is re-sent."}}},
		{Method: "DELETE", Pattern: "/admin/jobs/{job_id}/clean", Tag: "Admin", Summary: "Clean what a job left at its site", Auth: authAdmin, Status: 204,
			handler: s.adminClean,
			Params:  []param{pJobID, {In: "query", Name: "force", Type: "boolean", Description: "Clean a job that has not ended (default false)."}}},
		{Method: "PUT", Pattern: "/admin/sites/{site}/active", Tag: "Admin", Summary: "Activate a site", Auth: authAdmin, Status: 204,
			Params: []param{site}, handler: s.siteActive(true)},
		{Method: "DELETE", Pattern: "/admin/sites/{site}/active", Tag: "Admin", Summary: "Deactivate a site: submissions to it are refused (60010)",
			Auth: authAdmin, Status: 204, Params: []param{site}, handler: s.siteActive(false)},
		{Method: "POST", Pattern: "/admin/unsent_notifications", Tag: "Admin", Summary: "Send the Kafka notifications not yet acknowledged",
			Auth: authAdmin, Status: 200, Response: wire.UnsentNotifications{}, handler: s.unsentNotifications,
			Params: []param{{In: "query", Name: "notification_age", Type: "duration",
				Description: "Only transitions older than this, ISO 8601 or seconds, at least 1 minute (default PT10M)."}}},

		{Method: "GET", Pattern: "/admin/clients/nersc", Tag: "Not supported", Summary: "NERSC client information. " + notJAWS,
			Auth: authAdmin, Status: 200, handler: s.unsupported(authAdmin, msgNoNERSC)},
		{Method: "GET", Pattern: "/callback/download/{job_id}", Tag: "Not supported", Summary: "JAWS callback. " + notJAWS,
			Auth: authNone, Status: 204, Params: []param{pJobID}, handler: s.unsupported(authNone, msgNoJAWS)},
		{Method: "GET", Pattern: "/callback/refdata_download/{refdata_id}/{cluster}", Tag: "Not supported", Summary: "JAWS callback. " + notJAWS,
			Auth: authNone, Status: 204, handler: s.unsupported(authNone, msgNoJAWS),
			Params: []param{{In: "path", Name: "refdata_id", Type: "string"}, {In: "path", Name: "cluster", Type: "string"}}},
		{Method: "GET", Pattern: "/callback/job/{job_id}", Tag: "Not supported", Summary: "JAWS callback. " + notJAWS,
			Auth: authNone, Status: 204, Params: []param{pJobID}, handler: s.unsupported(authNone, msgNoJAWS)},
		{Method: "GET", Pattern: "/callback/upload/{job_id}", Tag: "Not supported", Summary: "JAWS callback. " + notJAWS,
			Auth: authNone, Status: 204, Params: []param{pJobID}, handler: s.unsupported(authNone, msgNoJAWS)},
		{Method: "GET", Pattern: "/callback/errlogs/{job_id}", Tag: "Not supported", Summary: "JAWS callback. " + notJAWS,
			Auth: authNone, Status: 204, Params: []param{pJobID}, handler: s.unsupported(authNone, msgNoJAWS)},
		{Method: "PUT", Pattern: "/external_exec/jobs/{job_id}/container/{container_num}/update/{new_state}", Tag: "Not supported",
			Summary: "The Python executor's container update. Answers 400 with app code 100000: agents report over the agent websocket.",
			Auth:    authExecutor, Status: 204, handler: s.unsupported(authExecutor, msgNoExecutorREST),
			Params: []param{pJobID, pContainer, {In: "path", Name: "new_state", Type: "string"}}},
		{Method: "GET", Pattern: "/external_exec/files/" + agentFileName, Tag: "Files",
			Summary: "The static cts-agent binary (linux), for launchers that download it (the HTCondor plugin's agent_url). " +
				"404 when the service has no agent_binary configured.",
			Auth: authNone, Status: 200, ContentType: "application/octet-stream", handler: s.agentBinary},
		{Method: "GET", Pattern: "/external_exec/files/condor/executable.sh", Tag: "Not supported",
			Summary: "The Python executor's worker script. Answers 400 with app code 100000: workers run the cts-agent binary.",
			Auth:    authNone, Status: 200, handler: s.unsupported(authNone, msgNoExecutorFiles)},
		{Method: "GET", Pattern: "/external_exec/files/code_archive.tgz", Tag: "Not supported",
			Summary: "The Python executor's code archive. Answers 400 with app code 100000: workers run the cts-agent binary.",
			Auth:    authNone, Status: 200, handler: s.unsupported(authNone, msgNoExecutorFiles)},
	}
}

// Messages of the routes this service answers with 400 / 100000.
const (
	msgNoNERSC         = "The service was started without NERSC job flows: no site of this service uses NERSC"
	msgNoJAWS          = "JAWS callbacks are not supported: no site of this service uses JAWS"
	msgNoExecutorREST  = "Container updates over REST are not supported: agents report over the agent websocket"
	msgNoExecutorFiles = "The Python executor's files are not served: workers run the cts-agent binary"
)

func (s *Server) siteNames() []string {
	if s.jobs.Sites == nil {
		return nil
	}
	return s.jobs.Sites.Names()
}
