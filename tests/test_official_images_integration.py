"""The replicas of the official nginx and haproxy images (tests/images/official/) start as their Dockerfiles
say: user, entrypoint behaviour, stop signal, what answers on port 80. Later work installs lbgen into them."""
from __future__ import annotations


def test_the_nginx_replica_runs_the_entrypoint_scripts_and_serves_the_stock_default_site(lab):
    net, _ = lab.network("official")
    proxy = lab.official_nginx(net)
    config = proxy.attrs["Config"]
    assert (config["Entrypoint"], config["Cmd"]) == (["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"])
    assert config["StopSignal"] == "SIGQUIT"
    logs = proxy.logs().decode()
    assert "/docker-entrypoint.sh: Launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh" in logs
    assert "/docker-entrypoint.sh: Sourcing /docker-entrypoint.d/15-local-resolvers.envsh" in logs
    assert "/docker-entrypoint.sh: Configuration complete; ready for start up" in logs
    # PID 1 is the nginx master, running as root; its workers run as the nginx user (uid 101).
    assert proxy.exec_run(["cat", "/proc/1/comm"]).output.decode().strip() == "nginx"
    users = proxy.exec_run(["sh", "-c", "ps -o user= -C nginx 2>/dev/null || "
                                        "for p in /proc/[0-9]*; do stat -c %U $p; done"]).output.decode().split()
    assert "nginx" in users
    assert proxy.exec_run(["id", "-u", "nginx"]).output.decode().strip() == "101"
    assert proxy.exec_run(["readlink", "/var/log/nginx/access.log"]).output.decode().strip() == "/dev/stdout"
    assert proxy.exec_run(["readlink", "/var/log/nginx/error.log"]).output.decode().strip() == "/dev/stderr"
    assert "include /etc/nginx/conf.d/*.conf;" in proxy.exec_run(["cat", "/etc/nginx/nginx.conf"]).output.decode()
    body = lab.wait_http(f"http://{lab.ip(proxy, net)}:80/", timeout=5)
    assert "Welcome to nginx!" in body
    # Requests reach the container's stdout, as with the official image.
    lab.wait_for(lambda: '"GET / HTTP/1.1" 200' in proxy.logs(stderr=False).decode(), timeout=5,
                 what="the access log line on stdout")


def test_the_haproxy_replica_runs_as_haproxy_in_master_worker_mode(lab):
    net, _ = lab.network("official")
    proxy = lab.official_haproxy(net)
    config = proxy.attrs["Config"]
    assert (config["Entrypoint"], config["Cmd"]) == (["docker-entrypoint.sh"],
                                                     ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"])
    assert (config["User"], config["WorkingDir"], config["StopSignal"]) == ("haproxy", "/var/lib/haproxy", "SIGUSR1")
    # The entrypoint added -W -db: PID 1 is the master, not root, with a worker beside it.
    cmdline = proxy.exec_run(["cat", "/proc/1/cmdline"]).output.decode().split("\0")
    assert cmdline[:4] == ["haproxy", "-W", "-db", "-f"], cmdline
    status = proxy.exec_run(["cat", "/proc/1/status"]).output.decode()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["99"] * 4
    assert proxy.exec_run(["id", "-un"]).output.decode().strip() == "haproxy"
    assert proxy.exec_run(["stat", "-c", "%U", "/usr/local/etc/haproxy"]).output.decode().strip() == "root"
    assert proxy.exec_run(["stat", "-c", "%U", "/var/lib/haproxy"]).output.decode().strip() == "haproxy"
    workers = proxy.exec_run(["sh", "-c", "grep -l haproxy /proc/[0-9]*/comm | wc -l"]).output.decode().strip()
    assert int(workers) >= 2  # master + worker
    assert lab.http_get(f"http://{lab.ip(proxy, net)}:80/")[0] == 503  # the placeholder config
