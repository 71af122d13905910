// Package env names the environment variables a launcher sets for every agent it starts. It
// is its own package, importing nothing, so that the agent can read them without linking the
// plugin machinery of package launcher (go-plugin, gRPC, protobuf: their initialisers cost
// every agent's start-up).
package env

// Environment variables a launcher sets for every container, beside the request's own.
const (
	// ContainerNumber is the container number, 0 to Containers-1.
	ContainerNumber = "CONTAINER_NUMBER"
	// AgentAttempt names this run of the container, unique per launch (HTCondor
	// "cluster.proc", local "local-<jobid8>-<attempt>-<n>"); the agent reports it in its hello.
	AgentAttempt = "CTS_AGENT_ATTEMPT"
	// CredentialFile names the file holding the container's credential: an absolute path, or
	// one relative to the agent's working directory. The file is readable by the agent's user
	// only.
	CredentialFile = "CTS_AGENT_CREDENTIAL_FILE"
	// Credential holds the container's credential itself, for a backend that can pass
	// environment variables privately but no file (other processes of the agent's user may
	// read a process environment: prefer CredentialFile).
	Credential = "CTS_AGENT_CREDENTIAL"
)
