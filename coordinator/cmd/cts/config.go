package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Configuration: defaults, then the config file, then the environment, then flags. Within one
// layer, token and token_file exclude each other; a later layer's token (of either kind)
// replaces an earlier one's.
//
//	file  ~/.config/cts/config.yaml ($XDG_CONFIG_HOME/cts/config.yaml), or CTS_CONFIG, or --config
//	      url: https://ci.kbase.us/services/cts
//	      token_file: ~/.config/cts/token      (or token: ...; relative paths are relative to the file)
//	      cluster: kbase                       (the default site of cts submit)
//	env   CTS_URL, CTS_TOKEN, CTS_TOKEN_FILE, CTS_CLUSTER
//	flags --url, --token-file, --config

// globalFlags are accepted before the command and by every command.
type globalFlags struct {
	url, tokenFile, config string
}

// config is the resolved configuration. The token is never printed; tokenSource says where it
// came from, for messages.
type config struct {
	url         string
	token       string
	tokenSource string
	cluster     string
	// warnings are problems worth telling but not fatal (a config file others can read).
	warnings []string
}

// configError is a problem with the configuration: exit code 1.
type configError struct{ err error }

func (e *configError) Error() string { return "configuration: " + e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func configErrorf(format string, a ...any) error {
	return &configError{fmt.Errorf(format, a...)}
}

// fileConfig is the config file.
type fileConfig struct {
	URL       string `yaml:"url"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	Cluster   string `yaml:"cluster"`
}

// defaultConfigPath returns the config file looked for when none is named.
func defaultConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "cts", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "cts", "config.yaml")
	}
	return ""
}

// expandHome turns a leading "~/" into $HOME/.
func expandHome(p string, getenv func(string) string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h := getenv("HOME"); h != "" {
			return filepath.Join(h, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

// loadConfig resolves the configuration.
func loadConfig(g globalFlags, getenv func(string) string) (*config, error) {
	cfg := &config{}
	path, named := g.config, true
	if path == "" {
		path = getenv("CTS_CONFIG")
	}
	if path == "" {
		path, named = defaultConfigPath(getenv), false
	}
	if path != "" {
		path = expandHome(path, getenv)
		if err := cfg.readFile(path, named, getenv); err != nil {
			return nil, err
		}
	}
	// Environment.
	if v := getenv("CTS_URL"); v != "" {
		cfg.url = v
	}
	if v := getenv("CTS_CLUSTER"); v != "" {
		cfg.cluster = v
	}
	tok, tokFile := getenv("CTS_TOKEN"), getenv("CTS_TOKEN_FILE")
	switch {
	case tok != "" && tokFile != "":
		return nil, configErrorf("set CTS_TOKEN or CTS_TOKEN_FILE, not both")
	case tok != "":
		cfg.token, cfg.tokenSource = strings.TrimSpace(tok), "CTS_TOKEN"
	case tokFile != "":
		if err := cfg.tokenFromFile(expandHome(tokFile, getenv), "CTS_TOKEN_FILE"); err != nil {
			return nil, err
		}
	}
	// Flags.
	if g.url != "" {
		cfg.url = g.url
	}
	if g.tokenFile != "" {
		if err := cfg.tokenFromFile(expandHome(g.tokenFile, getenv), "--token-file"); err != nil {
			return nil, err
		}
	}
	if cfg.url != "" {
		u, err := url.Parse(cfg.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, configErrorf("service URL %q: want http(s)://host[:port][/path]", cfg.url)
		}
		if u.User != nil {
			return nil, configErrorf("service URL must not hold credentials")
		}
	}
	if strings.ContainsAny(cfg.token, " \t\r\n") {
		return nil, configErrorf("the token from %s holds whitespace", cfg.tokenSource)
	}
	return cfg, nil
}

func (cfg *config) readFile(path string, named bool, getenv func(string) string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if !named && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return &configError{fmt.Errorf("read config file: %w", err)}
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return configErrorf("config file %s: %w", path, err)
	}
	cfg.url, cfg.cluster = fc.URL, fc.Cluster
	switch {
	case fc.Token != "" && fc.TokenFile != "":
		return configErrorf("config file %s: set token or token_file, not both", path)
	case fc.Token != "":
		cfg.token, cfg.tokenSource = strings.TrimSpace(fc.Token), "config file "+path
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			cfg.warnings = append(cfg.warnings, fmt.Sprintf(
				"config file %s holds a token and can be read by other users (chmod 600 it)", path))
		}
	case fc.TokenFile != "":
		tf := expandHome(fc.TokenFile, getenv)
		if !filepath.IsAbs(tf) {
			tf = filepath.Join(filepath.Dir(path), tf)
		}
		if err := cfg.tokenFromFile(tf, "token_file of "+path); err != nil {
			return err
		}
	}
	return nil
}

func (cfg *config) tokenFromFile(path, via string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return &configError{fmt.Errorf("token file (%s): %w", via, err)}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return configErrorf("token file %s (%s) is empty", path, via)
	}
	cfg.token, cfg.tokenSource = tok, "token file "+path
	return nil
}
