package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nginxConf is nginx as a careful operator would tune it to compare with a
// one-process gateway: one worker, keep-alive to clients and to the
// upstream (more idle upstream connections than the load has clients), no
// access log, and buffers big enough that a 64 KiB answer never touches
// disk. It tells the app what handoff always tells it, as the proxy of any
// app that logs or checks its clients must: the client's address, the Host
// it asked for and the scheme (X-Forwarded-For, -Host, -Proto). Without
// them nginx would do less for each request than handoff does, and the app
// behind it would parse a shorter request. keepalive_requests is raised so
// that nginx's default of closing a connection every 1000 requests does
// not count as reconnects.
const nginxConf = `daemon off;
master_process on;
worker_processes 1;
pid {{prefix}}/nginx.pid;
error_log {{prefix}}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path {{prefix}}/tmp/body;
  proxy_temp_path {{prefix}}/tmp/proxy;
  fastcgi_temp_path {{prefix}}/tmp/fastcgi;
  uwsgi_temp_path {{prefix}}/tmp/uwsgi;
  scgi_temp_path {{prefix}}/tmp/scgi;
  keepalive_requests 1000000;
  upstream app {
    server {{backend}};
    keepalive 512;
    keepalive_requests 1000000;
  }
  server {
    listen {{listen}};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffer_size 16k;
      proxy_buffers 8 16k;
      proxy_busy_buffers_size 32k;
      proxy_max_temp_file_size 0;
    }
  }
}
`

// startNginx runs nginx in the foreground with a generated config and a
// temporary prefix: never the system's service or config.
func (b *bench) startNginx(backend string) (*target, error) {
	bin, err := exec.LookPath(b.opts.nginx)
	if err != nil {
		return nil, fmt.Errorf("find nginx (apt-get install -y nginx): %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("create nginx prefix: %w", err)
	}
	t := &target{name: "nginx", addr: addr, conf: filepath.Join(prefix, "nginx.conf")}
	if err := writeNginxConf(t, prefix, backend); err != nil {
		return nil, err
	}
	if t.proc, err = startProc(b.dir, "nginx", b.cpu, nginxArgs(bin, t, prefix)...); err != nil {
		return nil, err
	}
	if err := waitReady(t.proc, addr, "/fast", readyTimeout); err != nil {
		t.proc.stop()
		return nil, err
	}
	return t, nil
}

func nginxArgs(bin string, t *target, prefix string) []string {
	return []string{bin, "-p", prefix, "-c", t.conf, "-e", filepath.Join(prefix, "error.log")}
}

func writeNginxConf(t *target, prefix, backend string) error {
	conf := strings.NewReplacer("{{prefix}}", prefix, "{{backend}}", backend, "{{listen}}", t.addr).Replace(nginxConf)
	if err := os.WriteFile(t.conf, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write nginx config: %w", err)
	}
	return nil
}

// nginxReload points nginx at a new backend the way operators do: rewrite
// the config, then `nginx -s reload`.
func (b *bench) nginxReload(t *target, backend string) error {
	prefix := filepath.Dir(t.conf)
	if err := writeNginxConf(t, prefix, backend); err != nil {
		return err
	}
	bin, err := exec.LookPath(b.opts.nginx)
	if err != nil {
		return fmt.Errorf("find nginx: %w", err)
	}
	args := append(nginxArgs(bin, t, prefix), "-s", "reload")
	if out, err := b.hostCommand(args...).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -s reload: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
