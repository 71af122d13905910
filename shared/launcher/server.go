package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kbase/cts/shared/launcher/internal/launcherpb"
)

// Handshake is the go-plugin handshake shared by the host and every launcher plugin. The magic
// cookie only keeps a plugin binary from being run by hand by mistake; it is not security.
// ProtocolVersion is bumped only for breaking wire changes.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "CTS_LAUNCHER_PLUGIN",
	MagicCookieValue: "5f0c1d7e-launcher-9a3b62e4c8d1f07b",
}

// pluginName is the key of the launcher in go-plugin's plugin set.
const pluginName = "launcher"

// grpcPlugin glues a Launcher to go-plugin: on the plugin side it registers the gRPC service,
// on the host side it returns the generated client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Launcher
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

// GRPCServer registers the launcher service. go-plugin registers the health service itself.
func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	launcherpb.RegisterLauncherServer(s, &server{impl: p.impl})
	return nil
}

// GRPCClient returns the raw generated client; Client wraps it.
func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return launcherpb.NewLauncherClient(cc), nil
}

// PluginSet is the go-plugin plugin set that serves impl. Serve uses it; tests use it with
// plugin.TestPluginGRPCConn and NewInProcessClient.
func PluginSet(impl Launcher) plugin.PluginSet {
	return plugin.PluginSet{pluginName: &grpcPlugin{impl: impl}}
}

// Serve serves impl as a launcher plugin over gRPC and returns when the host ends the plugin.
// It is meant for a plugin's main, after the plugin's own setup. It also ends the process when
// the host process dies without ending it (its parent changes), so no plugin outlives its host.
// Log with a logger from NewPluginLogger made before calling Serve: Serve redirects
// os.Stdout/os.Stderr to the host's SyncStdout/SyncStderr.
func Serve(impl Launcher) {
	go exitWhenOrphaned(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// exitWhenOrphaned ends the process once its parent is no longer ppid (the host died and the
// plugin was reparented). It runs for the life of the process.
func exitWhenOrphaned(ppid int, every time.Duration) {
	for {
		time.Sleep(every)
		if os.Getppid() != ppid {
			os.Exit(2)
		}
	}
}

// NewPluginLogger returns a logger for a plugin process that writes JSON lines go-plugin's
// host understands (hclog's @level/@message/@timestamp keys) to w, normally os.Stderr
// captured before Serve. The host re-logs each line at its level through its own logger.
func NewPluginLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				lvl, _ := a.Value.Any().(slog.Level)
				return slog.String("@level", hclogLevelName(lvl))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

// hclogLevelName maps a slog level to the level names hclog parses.
func hclogLevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

// server adapts a Launcher to the generated gRPC service. It validates requests (so every
// plugin gets well-formed input) and translates errors to statuses exactly once.
type server struct {
	launcherpb.UnimplementedLauncherServer
	impl Launcher
}

func (s *server) Info(ctx context.Context, _ *launcherpb.InfoRequest) (*launcherpb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &launcherpb.InfoResponse{Name: info.Name, ApiVersion: int32(info.APIVersion), Capabilities: info.Capabilities}, nil
}

func (s *server) Configure(ctx context.Context, req *launcherpb.ConfigureRequest) (*launcherpb.ConfigureResponse, error) {
	if err := s.impl.Configure(ctx, req.GetConfig()); err != nil {
		return nil, toStatus(err)
	}
	return &launcherpb.ConfigureResponse{}, nil
}

func (s *server) Submit(ctx context.Context, req *launcherpb.SubmitRequest) (*launcherpb.SubmitResponse, error) {
	r := submitFromWire(req)
	if err := r.Validate(); err != nil {
		return nil, toStatus(err)
	}
	resp, err := s.impl.Submit(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &launcherpb.SubmitResponse{Handle: resp.Handle, Existing: resp.Existing}, nil
}

func (s *server) Status(ctx context.Context, req *launcherpb.StatusRequest) (*launcherpb.StatusResponse, error) {
	refs := make([]JobRef, len(req.GetJobs()))
	for i, r := range req.GetJobs() {
		refs[i] = refFromWire(r)
	}
	statuses, err := s.impl.Status(ctx, refs)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(statuses) != len(refs) {
		return nil, toStatus(fmt.Errorf("plugin bug: status returned %d entries for %d jobs", len(statuses), len(refs)))
	}
	out := &launcherpb.StatusResponse{Jobs: make([]*launcherpb.JobStatus, len(statuses))}
	for i, st := range statuses {
		out.Jobs[i] = jobStatusToWire(st)
	}
	return out, nil
}

func (s *server) Cancel(ctx context.Context, req *launcherpb.CancelRequest) (*launcherpb.CancelResponse, error) {
	if err := s.impl.Cancel(ctx, refFromWire(req.GetJob())); err != nil {
		return nil, toStatus(err)
	}
	return &launcherpb.CancelResponse{}, nil
}

func (s *server) Cleanup(ctx context.Context, req *launcherpb.CleanupRequest) (*launcherpb.CleanupResponse, error) {
	c, ok := s.impl.(Cleaner)
	if !ok {
		return nil, toStatus(fmt.Errorf("cleanup: %w", errors.ErrUnsupported))
	}
	if err := c.Cleanup(ctx, refFromWire(req.GetJob())); err != nil {
		return nil, toStatus(err)
	}
	return &launcherpb.CleanupResponse{}, nil
}
