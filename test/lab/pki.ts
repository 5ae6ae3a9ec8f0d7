// Certificates for the lab's control planes, laid out the way kubeadm lays them out in
// /etc/kubernetes/pki, made with openssl. ECDSA P-256 keys: a tenth of the time of RSA and
// accepted by etcd and every TLS client we use.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { must } from "./sys.ts";

export interface PkiNode {
  name: string;
  address: string;
}

const CONFIG = "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n";
const DAYS = "3650";

async function selfSigned(dir: string, base: string, cn: string): Promise<void> {
  // biome-ignore format: one flag per line reads better
  await must([
    "openssl", "req", "-config", `${dir}/openssl.cnf`, "-x509", "-new", "-nodes",
    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-keyout", `${base}.key`, "-out", `${base}.crt`, "-days", DAYS, "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
  ]);
  chmodSync(`${base}.key`, 0o600);
}

async function leaf(
  dir: string,
  ca: string,
  base: string,
  subject: string,
  usage: "server" | "client" | "both",
  sans: string[] = [],
): Promise<void> {
  const eku = { server: "serverAuth", client: "clientAuth", both: "serverAuth,clientAuth" }[usage];
  // biome-ignore format: one flag per line reads better
  const argv = [
    "openssl", "req", "-config", `${dir}/openssl.cnf`, "-x509", "-new", "-nodes",
    "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`,
    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-keyout", `${base}.key`, "-out", `${base}.crt`, "-days", DAYS, "-subj", subject,
    "-addext", "basicConstraints=critical,CA:FALSE",
    "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
    "-addext", `extendedKeyUsage=${eku}`,
  ];
  if (sans.length > 0) argv.push("-addext", `subjectAltName=${sans.join(",")}`);
  await must(argv);
  chmodSync(`${base}.key`, 0o600);
}

export interface LabPki {
  /** Per control plane: a directory shaped like /etc/kubernetes/pki, ready to copy onto the host. */
  nodeDir(name: string): string;
  /** Client certificate for etcdctl run from the machine (root namespace). */
  etcdCa: string;
  clientCert: string;
  clientKey: string;
}

/**
 * Make one etcd CA and one Kubernetes CA for the whole lab (members must share the etcd CA),
 * then each control plane's server, peer, healthcheck-client, apiserver-etcd-client and
 * apiserver certificates with the SANs kubeadm would give them.
 */
export async function makeLabPki(
  dir: string,
  controlPlanes: PkiNode[],
  vip: string,
  /** The cluster CA kubeadm-ha generated for the lab cluster, so joins pinned to it verify as on a real cluster. */
  clusterCa?: { cert: string; key: string },
): Promise<LabPki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(`${dir}/openssl.cnf`, CONFIG);
  if (clusterCa) {
    writeFileSync(`${dir}/kubernetes-ca.crt`, clusterCa.cert);
    writeFileSync(`${dir}/kubernetes-ca.key`, clusterCa.key, { mode: 0o600 });
  }
  await Promise.all([
    selfSigned(dir, `${dir}/etcd-ca`, "etcd-ca"),
    clusterCa ? Promise.resolve() : selfSigned(dir, `${dir}/kubernetes-ca`, "kubernetes"),
  ]);
  await leaf(dir, `${dir}/etcd-ca`, `${dir}/lab-etcdctl`, "/CN=kube-etcd-healthcheck-client", "client");
  await Promise.all(controlPlanes.map((n) => makeNodePki(dir, n, vip)));
  return {
    nodeDir: (name) => `${dir}/${name}/pki`,
    etcdCa: `${dir}/etcd-ca.crt`,
    clientCert: `${dir}/lab-etcdctl.crt`,
    clientKey: `${dir}/lab-etcdctl.key`,
  };
}

/**
 * One control plane's certificates in `dir/<name>/pki` from the lab CAs already in `dir`, with the
 * SANs kubeadm gives them for the node's address (again after the host moved: labReaddress).
 */
export async function makeNodePki(dir: string, n: PkiNode, vip: string): Promise<void> {
  const pki = `${dir}/${n.name}/pki`;
  mkdirSync(`${pki}/etcd`, { recursive: true, mode: 0o700 });
  await must(["cp", `${dir}/etcd-ca.crt`, `${dir}/etcd-ca.key`, `${pki}/etcd/`]);
  await must(["mv", `${pki}/etcd/etcd-ca.crt`, `${pki}/etcd/ca.crt`]);
  await must(["mv", `${pki}/etcd/etcd-ca.key`, `${pki}/etcd/ca.key`]);
  await must(["cp", `${dir}/kubernetes-ca.crt`, `${pki}/ca.crt`]);
  await must(["cp", `${dir}/kubernetes-ca.key`, `${pki}/ca.key`]);
  const etcdSans = [`DNS:${n.name}`, "DNS:localhost", `IP:${n.address}`, "IP:127.0.0.1", "IP:::1"];
  const ca = `${dir}/etcd-ca`;
  await Promise.all([
    leaf(dir, ca, `${pki}/etcd/server`, `/CN=${n.name}`, "both", etcdSans),
    leaf(dir, ca, `${pki}/etcd/peer`, `/CN=${n.name}`, "both", etcdSans),
    leaf(dir, ca, `${pki}/etcd/healthcheck-client`, "/CN=kube-etcd-healthcheck-client", "client"),
    leaf(dir, ca, `${pki}/apiserver-etcd-client`, "/O=system:masters/CN=kube-apiserver-etcd-client", "client"),
    leaf(dir, `${dir}/kubernetes-ca`, `${pki}/apiserver`, "/CN=kube-apiserver", "server", [
      "DNS:kubernetes",
      "DNS:kubernetes.default",
      "DNS:kubernetes.default.svc",
      "DNS:kubernetes.default.svc.cluster.local",
      `DNS:${n.name}`,
      "DNS:localhost",
      "IP:10.96.0.1",
      `IP:${n.address}`,
      `IP:${vip}`,
      "IP:127.0.0.1",
    ]),
  ]);
}

export interface LabServerTls {
  /** The lab CA the hosts trust (system CA store), apart from the cluster's and etcd's CAs. */
  ca: string;
  cert: string;
  key: string;
}

/** A lab CA and a server certificate for `address` signed by it (the lab's apt repository on the bridge). */
export async function makeLabServerTls(dir: string, address: string): Promise<LabServerTls> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(`${dir}/openssl.cnf`, CONFIG);
  await selfSigned(dir, `${dir}/lab-ca`, "kubeadm-ha lab CA");
  await leaf(dir, `${dir}/lab-ca`, `${dir}/server`, `/CN=${address}`, "server", [`IP:${address}`]);
  return { ca: `${dir}/lab-ca.crt`, cert: `${dir}/server.crt`, key: `${dir}/server.key` };
}
