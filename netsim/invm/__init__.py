"""Programs that run inside a VM (standard library only): the metadata client, the
Scheduled Events logger, the drain agent, the web app, syslog lines and HAProxy's runtime
API client. Each starts with :func:`netsim.kernel.safety.require_emulated_namespace`."""
