"""The HAProxy configuration for N server instances behind one address (``v6nb server haproxy-config``)."""

from __future__ import annotations

__all__ = ["haproxy_config"]


def haproxy_config(
    bind: str,
    instances: list[str],
    *,
    max_per_address: int = 500,
    check_interval_ms: int = 1000,
    stats: str = "",
) -> str:
    """An HAProxy (2.4+) configuration that spreads clients over ``instances`` (``host:port`` each).

    - health checks on ``GET /api/health`` every ``check_interval_ms``; an instance that fails
      two is taken out and its connections are closed, so its nodes reconnect to another;
    - websockets pass through (``timeout tunnel``); no sticky sessions are needed for them, and
      a cookie keeps an HTTP long-polling socket.io client on one instance;
    - a connection that fails, or a GET whose instance dies before answering, is retried on
      another instance (never a POST: it may have been applied);
    - request heads must arrive within 10 s, and one client address holds at most
      ``max_per_address`` connections at the balancer (0: no bound);
    - ``option forwardfor`` appends the client's address to ``X-Forwarded-For``: give the
      instances ``trusted_proxies: [<the balancer's address>]`` and they use it for the login
      limit, the audit log and their own ``max_connections_per_address`` (without it they see
      only the balancer's address, and the header is ignored).

    Examples
    --------
    >>> cfg = haproxy_config("127.0.0.1:7600", ["127.0.0.1:7601", "127.0.0.1:7602"])
    >>> "server s2 127.0.0.1:7602 check cookie s2" in cfg
    True
    """
    if not instances:
        raise ValueError("Name at least one instance (host:port) to balance over.")
    servers = "\n".join(
        f"    server s{i} {addr} check cookie s{i}" for i, addr in enumerate(instances, 1)
    )
    bound = (
        "    stick-table type ip size 100k expire 60s store conn_cur\n"
        "    tcp-request connection track-sc0 src\n"
        f"    tcp-request connection reject if {{ sc0_conn_cur gt {max_per_address} }}\n"
        if max_per_address > 0
        else ""
    )
    stats_section = (
        f"\nlisten stats\n    bind {stats}\n    stats enable\n    stats uri /\n" if stats else ""
    )
    return f"""# written by `v6nb server haproxy-config`; see docs/operations.md
global
    # no maxconn: HAProxy derives it from the open-file limit (ulimit -n)
    log stdout format raw local0 notice

defaults
    mode http
    log global
    option dontlognull
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-request 10s
    timeout http-keep-alive 30s
    timeout queue 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend v6nb
    bind {bind}
    # appends the client's address to X-Forwarded-For; the instances read it only with
    # trusted_proxies set to this balancer's address (docs/operations.md)
    option forwardfor
{bound}    http-request disable-l7-retry if METH_POST
    default_backend v6nb_instances

backend v6nb_instances
    balance roundrobin
    cookie V6NB_INSTANCE insert indirect nocache
    option httpchk GET /api/health
    http-check expect status 200
    default-server inter {check_interval_ms} fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
{stats_section}"""
