"""The host: the one module that starts subprocesses, process identity, the control
socket's place, logs, service managers, source-tree scans."""
