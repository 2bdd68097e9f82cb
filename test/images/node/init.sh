#!/bin/sh
# Starts containerd once /etc/containerd/config.toml exists.
mkdir -p /run/containerd /var/lib/containerd /etc/containerd/certs.d /tmp
while [ ! -s /etc/containerd/config.toml ]; do sleep 0.2; done
exec containerd --config /etc/containerd/config.toml
