#!/bin/bash
# Runs once while the node image is built: boot straight to multi-user with
# containerd and the kubelet, and nothing a container cannot run (consoles,
# binfmt, udev).
set -o errexit -o nounset -o pipefail

# kind writes /kind/version into kubeadm.conf as kubernetesVersion, which kubeadm checks against its own.
kubernetes_version=${1:?the Kubernetes version the node runs}
echo "${kubernetes_version}" > /kind/version
# The pod network's route keeper runs in kube-proxy's image, which kubeadm.sh imports at this version.
sed -i "s|registry.k8s.io/kube-proxy:v[0-9.]*|registry.k8s.io/kube-proxy:${kubernetes_version}|" /kind/manifests/default-cni.yaml

# The distribution's default wants start services a node container has no use for.
rm -f /etc/systemd/system/*.wants/* \
  /usr/lib/systemd/system/multi-user.target.wants/* \
  /usr/lib/systemd/system/local-fs.target.wants/* \
  /usr/lib/systemd/system/sockets.target.wants/*udev* \
  /usr/lib/systemd/system/sockets.target.wants/*initctl* \
  /usr/lib/systemd/system/basic.target.wants/*
systemctl mask getty.target console-getty.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service
systemctl set-default multi-user.target
systemctl enable containerd.service kubelet.service
mkdir -p /etc/containerd/certs.d /var/lib/containerd /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests
# Debian's containerd 1.7 looks for CNI plugins in /usr/lib/cni, upstream's in /opt/cni/bin.
[[ -e /usr/lib/cni ]] || ln -s /opt/cni/bin /usr/lib/cni
# crictl finds containerd here, as on kindest/node.
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' > /etc/crictl.yaml
chmod 0755 /usr/local/bin/entrypoint /usr/bin/kubeadm /usr/local/libexec/kubernetes/*.sh /usr/local/bin/crictl
rm -rf /usr/share/doc /usr/share/man /kind/prepare.sh
