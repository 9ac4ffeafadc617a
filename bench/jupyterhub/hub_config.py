# JupyterHub as berth's peer: one hub and its proxy on loopback, local processes as
# servers, an API token for the measuring service. Everything comes from BENCH_* variables
# that run.sh sets.
import os
import sys

import jupyterhub

c = get_config()  # noqa: F821 (given by JupyterHub)
here = os.path.dirname(os.path.abspath(__file__))
run = os.environ["BENCH_RUN"]

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ["BENCH_PROXY_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["BENCH_HUB_PORT"])
# The proxy runs on its own (run.sh starts it), so its process is measured apart.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:" + os.environ["BENCH_PROXY_API_PORT"]
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
c.JupyterHub.db_url = "sqlite:///" + os.path.join(run, "hub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(run, "cookie_secret")
c.JupyterHub.pid_file = os.path.join(run, "hub.pid")
c.JupyterHub.cleanup_servers = True

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{"name": "measure", "api_token": os.environ["BENCH_TOKEN"]}]
c.JupyterHub.load_roles = [
    {"name": "measure", "scopes": ["admin:users", "admin:servers"], "services": ["measure"]},
]
# No limit of the hub's own stands in the way of the counts measured.
c.JupyterHub.active_server_limit = 0
c.JupyterHub.concurrent_spawn_limit = 0

c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(run, "homes", "{username}")
c.Spawner.ip = "127.0.0.1"
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.Spawner.environment = {"BENCH_HUB_VERSION": jupyterhub.__version__}
if os.environ["BENCH_MODE"] == "light":
    c.Spawner.cmd = [sys.executable, "-I", os.path.join(here, "stand_in_server.py")]
else:
    c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
    c.Spawner.args = ["--allow-root"]
