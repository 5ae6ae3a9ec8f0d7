// Patching kubeadm's etcd.yaml: only the data dir moves; comments and every other line stay.
import { describe, expect, test } from "bun:test";
import { UserError } from "../../lib/errors.ts";
import { hasEtcdFlag, patchEtcdManifest, readEtcdManifest, withEtcdFlag } from "../../lib/etcd/manifest.ts";

// As kubeadm 1.31 writes it (plus a comment an operator added).
const KUBEADM_ETCD_YAML = `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.163:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.163:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --experimental-initial-corrupt-check=true
    - --experimental-watch-progress-notify-interval=5s
    - --initial-advertise-peer-urls=https://10.0.0.163:2380
    - --initial-cluster=cp-1=https://10.0.0.163:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.163:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://10.0.0.163:2380
    - --name=cp-1
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.15-0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: /var/lib/etcd # keep on the SSD
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  priority: 2000001000
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
`;

describe("etcd manifest", () => {
  test("reads the facts restore needs", () => {
    const f = readEtcdManifest(KUBEADM_ETCD_YAML);
    expect(f).toMatchObject({
      name: "cp-1",
      dataDir: "/var/lib/etcd",
      peerUrl: "https://10.0.0.163:2380",
      clientUrl: "https://10.0.0.163:2379",
      imageVersion: "3.5.15",
      dataHostPath: "/var/lib/etcd",
    });
    expect(f.flags["trusted-ca-file"]).toBe("/etc/kubernetes/pki/etcd/ca.crt");
  });

  test("patch moves --data-dir, the data mount and its hostPath, and changes nothing else", () => {
    const out = patchEtcdManifest(KUBEADM_ETCD_YAML, "/var/lib/etcd-restore-20250101T000000Z");
    const f = readEtcdManifest(out);
    expect(f.dataDir).toBe("/var/lib/etcd-restore-20250101T000000Z");
    expect(f.dataHostPath).toBe("/var/lib/etcd-restore-20250101T000000Z");
    // Line-by-line: exactly the three data-dir lines differ; the certs volume is untouched.
    const before = KUBEADM_ETCD_YAML.split("\n");
    const after = out.split("\n");
    expect(after.length).toBe(before.length);
    const changed = before.map((l, i) => [l, after[i]]).filter(([a, b]) => a !== b);
    expect(changed).toEqual([
      ["    - --data-dir=/var/lib/etcd", "    - --data-dir=/var/lib/etcd-restore-20250101T000000Z"],
      [
        "    - mountPath: /var/lib/etcd # keep on the SSD",
        "    - mountPath: /var/lib/etcd-restore-20250101T000000Z # keep on the SSD",
      ],
      ["      path: /var/lib/etcd", "      path: /var/lib/etcd-restore-20250101T000000Z"],
    ]);
    expect(out).toContain("path: /etc/kubernetes/pki/etcd\n");
  });

  test("patching twice is stable and can go back", () => {
    const once = patchEtcdManifest(KUBEADM_ETCD_YAML, "/var/lib/etcd-new");
    expect(patchEtcdManifest(once, "/var/lib/etcd-new")).toBe(once);
    expect(patchEtcdManifest(once, "/var/lib/etcd")).toBe(KUBEADM_ETCD_YAML);
  });

  test("bad input is a UserError that names the problem", () => {
    expect(() => patchEtcdManifest(KUBEADM_ETCD_YAML, "relative/dir")).toThrow(/is not an absolute path/);
    expect(() => patchEtcdManifest(KUBEADM_ETCD_YAML, "/var/lib/etcd';reboot")).toThrow(/contains/);
    expect(() => patchEtcdManifest("kind: Pod\nspec: {}\n", "/x")).toThrow(UserError);
    const noVolume = KUBEADM_ETCD_YAML.replace(/ {2}- hostPath:\n {6}path: \/var\/lib\/etcd\n.*\n.*etcd-data\n/, "");
    expect(noVolume).not.toContain("name: etcd-data\nstatus");
    expect(() => patchEtcdManifest(noVolume, "/x")).toThrow(/refusing to patch only half/);
    expect(() => patchEtcdManifest("a: [\n", "/x")).toThrow(/not valid YAML/);
  });
});

describe("--force-new-cluster, added for one start and taken out again (etcd:recover)", () => {
  test("added once, at the end of the command, everything else byte for byte", () => {
    const on = withEtcdFlag(KUBEADM_ETCD_YAML, "force-new-cluster", true);
    expect(hasEtcdFlag(on, "force-new-cluster")).toBe(true);
    expect(hasEtcdFlag(KUBEADM_ETCD_YAML, "force-new-cluster")).toBe(false);
    expect(withEtcdFlag(on, "force-new-cluster", true)).toBe(on);
    expect(on.match(/--force-new-cluster/g)).toHaveLength(1);
    expect(on.replace(/\n *- --force-new-cluster/, "")).toBe(KUBEADM_ETCD_YAML);
  });
  test("removed again gives the original back, also the --flag=true form", () => {
    const on = withEtcdFlag(KUBEADM_ETCD_YAML, "force-new-cluster", true);
    expect(withEtcdFlag(on, "force-new-cluster", false)).toBe(KUBEADM_ETCD_YAML);
    const eq = on.replace("- --force-new-cluster", "- --force-new-cluster=true");
    expect(withEtcdFlag(eq, "force-new-cluster", false)).toBe(KUBEADM_ETCD_YAML);
  });
});
