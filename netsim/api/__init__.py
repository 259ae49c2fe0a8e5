"""The Python API of a datacenter: up, attach, status, exec, down, cleanup, and the client of
the daemon's control socket."""
