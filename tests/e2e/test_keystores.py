"""Key and trust stores as ZooKeeper's SSL guide makes them: keytool JKS and
PKCS12 stores, with X.509 v1 server and client certificates from
``openssl x509 -req`` without extensions (which webpki refuses and Java
accepts), the store type from the file extension or ``ssl.*.type``, and the
passwords inline or in ``…passwordPath`` files. Everything is generated here
in a temp dir; the same settings start ZooKeeper 3.8.
"""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient

from conftest import TARGET, WARDEN_BIN, free_port, single_node_only, start_server

WARDEN_ONLY = pytest.mark.skipif(TARGET != "warden", reason="Warden's start-up messages")
pytestmark = [pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("keytool")), reason="needs openssl and keytool"),
              single_node_only]

STORE_PASS, TRUST_PASS = "storepass", "trustpass"


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, "%s: %s" % (" ".join(cmd), r.stderr)


class Stores:
    def __init__(self, d):
        self.dir = d
        self.ca, ca_key = self.ca_pair("ca", "/CN=Keystore Test CA")
        self.other_ca, other_key = self.ca_pair("other-ca", "/CN=Other CA")
        self.server = self.v1_leaf("server", "/CN=localhost", self.ca, ca_key)
        self.client = self.v1_leaf("client", "/O=Warden/CN=client", self.ca, ca_key)
        self.stranger = self.v1_leaf("stranger", "/O=Warden/CN=client", self.other_ca, other_key)
        # The key store: PKCS12 by openssl (Java reads it), JKS by keytool from it.
        self.keystore_p12 = self.path("keystore.p12")
        run("openssl", "pkcs12", "-export", "-in", self.server[0], "-inkey", self.server[1], "-certfile", self.ca,
            "-name", "server", "-passout", "pass:" + STORE_PASS, "-out", self.keystore_p12)
        self.keystore_jks = self.path("keystore.jks")
        run("keytool", "-importkeystore", "-noprompt", "-srckeystore", self.keystore_p12, "-srcstoretype", "PKCS12",
            "-srcstorepass", STORE_PASS, "-destkeystore", self.keystore_jks, "-deststoretype", "JKS",
            "-deststorepass", STORE_PASS, "-destkeypass", STORE_PASS)
        self.truststore = {}
        for kind in ("JKS", "PKCS12"):
            path = self.path("truststore." + ("jks" if kind == "JKS" else "p12"))
            run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", self.ca, "-storetype", kind,
                "-keystore", path, "-storepass", TRUST_PASS)
            self.truststore[kind] = path
        # The same PKCS12 under a name with no known extension: the type key must say it.
        self.keystore_untyped = self.path("server-keys.store")
        shutil.copy(self.keystore_p12, self.keystore_untyped)
        self.store_pass_file = self.path("store.pass")
        with open(self.store_pass_file, "w") as f:
            f.write(STORE_PASS + "\n")
        self.trust_pass_file = self.path("trust.pass")
        with open(self.trust_pass_file, "w") as f:
            f.write(TRUST_PASS + "\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca_pair(self, name, subject):
        cert, key = self.path(name + ".pem"), self.path(name + ".key")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", subject)
        return cert, key

    def v1_leaf(self, name, subject, ca, ca_key):
        cert, key, csr = self.path(name + ".crt"), self.path(name + ".key"), self.path(name + ".csr")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-days", "2",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", cert)
        text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"], capture_output=True, text=True).stdout
        assert "Version: 1 (0x0)" in text, "openssl x509 -req without extensions makes v1 certificates"
        return cert, key


@pytest.fixture(scope="module")
def stores():
    d = tempfile.mkdtemp(prefix="warden-stores-")
    yield Stores(d)
    shutil.rmtree(d, ignore_errors=True)


def layouts(s):
    """(name, settings): JKS by extension with inline passwords; PKCS12 by
    extension with password files; PKCS12 under an unknown extension with
    explicit types."""
    return {
        "jks": {"ssl.keyStore.location": s.keystore_jks, "ssl.keyStore.password": STORE_PASS,
                "ssl.trustStore.location": s.truststore["JKS"], "ssl.trustStore.password": TRUST_PASS},
        "pkcs12-password-files": {"ssl.keyStore.location": s.keystore_p12, "ssl.keyStore.passwordPath": s.store_pass_file,
                                  "ssl.trustStore.location": s.truststore["PKCS12"], "ssl.trustStore.passwordPath": s.trust_pass_file},
        "typed": {"ssl.keyStore.location": s.keystore_untyped, "ssl.keyStore.type": "PKCS12", "ssl.keyStore.password": STORE_PASS,
                  "ssl.trustStore.location": s.truststore["JKS"], "ssl.trustStore.type": "jks", "ssl.trustStore.password": TRUST_PASS},
    }


def tls_handshake(port, ca, cert=None, version=None):
    """Handshake and a ruok over TLS; the answer, or the error's text."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            s.sendall(b"ruok")
            out = b""
            while True:
                chunk = s.recv(64)
                if not chunk:
                    return out.decode()
                out += chunk
    except (OSError, ssl.SSLError) as e:
        return "error: %s" % e


def wait_tls(port, s):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if tls_handshake(port, s.ca, s.client) == "imok":
            return
        time.sleep(0.2)
    raise AssertionError("secure port %d never answered ruok" % port)


@pytest.mark.parametrize("layout", ["jks", "pkcs12-password-files", "typed"])
def test_keytool_stores_with_v1_certificates_serve_and_verify_clients(stores, layout):
    port = free_port()
    settings = {"secureClientPort": str(port), "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory"}
    settings.update(layouts(stores)[layout])
    srv = start_server(settings)
    try:
        wait_tls(port, stores)
        zk = KazooClient(hosts="127.0.0.1:%d" % port, use_ssl=True, ca=stores.ca, certfile=stores.client[0],
                         keyfile=stores.client[1], verify_certs=True, timeout=10.0)
        zk.start(timeout=15)
        try:
            zk.create("/over-" + layout, b"v1 certs")
            assert zk.get("/over-" + layout)[0] == b"v1 certs"
        finally:
            zk.stop()
            zk.close()
        # Verified, not just accepted: a v1 certificate from another CA, or none (clientAuth need), is refused.
        assert tls_handshake(port, stores.ca, stores.stranger) != "imok"
        assert tls_handshake(port, stores.ca) != "imok"
        assert tls_handshake(port, stores.ca, stores.client) == "imok"
        # TLS 1.2 signs differently (CertificateVerify over the handshake hash): both ways again.
        assert tls_handshake(port, stores.ca, stores.client, ssl.TLSVersion.TLSv1_2) == "imok"
        assert tls_handshake(port, stores.ca, stores.stranger, ssl.TLSVersion.TLSv1_2) != "imok"
    finally:
        srv.stop()


def warden_start_error(tmp_path, settings):
    cmd = [WARDEN_BIN, "server", "--set", "clientPort=0", "--set", "dataDir=%s" % (tmp_path / "data"), "--set", "secureClientPort=0"]
    for k, v in settings.items():
        cmd += ["--set", "%s=%s" % (k, v)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    return r.stderr


@WARDEN_ONLY
def test_bad_stores_stop_the_start_naming_key_and_file(stores, tmp_path):
    good = layouts(stores)["jks"]
    err = warden_start_error(tmp_path, dict(good, **{"ssl.keyStore.password": "wrong"}))
    assert "ssl.keyStore" in err and stores.keystore_jks in err and "password is incorrect" in err, err
    err = warden_start_error(tmp_path, {k: v for k, v in good.items() if k != "ssl.trustStore.password"})
    assert "ssl.trustStore" in err and stores.truststore["JKS"] in err and "password is incorrect" in err, err
    err = warden_start_error(tmp_path, dict(good, **{"ssl.keyStore.location": stores.truststore["JKS"], "ssl.keyStore.password": TRUST_PASS}))
    assert "ssl.keyStore.location" in err and "no private key entry" in err, err
    damaged = tmp_path / "damaged.p12"
    damaged.write_bytes(open(stores.keystore_p12, "rb").read()[:-40])
    err = warden_start_error(tmp_path, dict(good, **{"ssl.keyStore.location": str(damaged)}))
    assert "ssl.keyStore.location" in err and str(damaged) in err, err
    err = warden_start_error(tmp_path, dict(good, **{"ssl.keyStore.location": stores.keystore_untyped}))
    assert "ssl.keyStore.location" in err and "ssl.keyStore.type" in err, err
