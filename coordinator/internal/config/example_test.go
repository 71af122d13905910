package config_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/config"
	"github.com/kbase/cts/plugins/htcondor"
)

// productionExample is the example production configuration shipped for operators.
const productionExample = "../../../deploy/coordinator/config.example.yaml"

// TestProductionExample loads the example production configuration as the coordinator does,
// with the secrets in the environment, and checks its HTCondor site's plugin_config against
// the plugin's own configuration type.
func TestProductionExample(t *testing.T) {
	// The agent binary exists in the container image, not here: point the key at a file.
	agent := filepath.Join(t.TempDir(), "cts-agent")
	if err := os.WriteFile(agent, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(productionExample, env(map[string]string{
		"CTS_MONGO_URI":     "mongodb://cts:pw@mongo-0.example.org:27017/?replicaSet=rs0",
		"CTS_S3_SECRET_KEY": "s3cr3t",
		"CTS_AGENT_BINARY":  agent,
	}))
	if err != nil {
		t.Fatalf("load %s: %v", productionExample, err)
	}
	if c.Mongo.URI == "" || len(c.Kafka.Brokers) < 2 || c.S3.SecretKey != "s3cr3t" || len(c.Sites) != 1 || c.ServiceURL == config.Default().ServiceURL {
		t.Fatalf("loaded %+v", c.Redacted())
	}
	b, err := os.ReadFile(productionExample)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cr3t") || strings.Contains(strings.ToLower(string(b)), "password:") {
		t.Fatal("the example holds a secret")
	}

	// The plugin refuses unknown keys; its tools (condor_submit, ...) are not installed here,
	// so only their lookups may fail.
	pc, err := json.Marshal(c.Sites[0].PluginConfig)
	if err != nil {
		t.Fatal(err)
	}
	var hc htcondor.Config
	dec := json.NewDecoder(bytes.NewReader(pc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hc); err != nil {
		t.Fatalf("plugin_config is not an HTCondor plugin configuration: %v", err)
	}
	if err := hc.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.Contains(line, "executable file not found") {
				t.Errorf("plugin_config: %s", line)
			}
		}
	}
	if !strings.HasPrefix(hc.AgentURL, c.ServiceURL+"/external_exec/files/") {
		t.Errorf("agent_url %q is not the coordinator's agent route under %s", hc.AgentURL, c.ServiceURL)
	}
}
