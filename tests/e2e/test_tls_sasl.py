"""TLS on secureClientPort, the x509 ACL scheme and SASL DIGEST-MD5.

Certificates are made here with openssl (a CA, a server certificate for
127.0.0.1/localhost, two client certificates) in a temp dir; nothing secret
is committed. ZooKeeper gets the same PEM stores (Netty connection factory)
and the same JAAS file.
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
from kazoo.exceptions import AuthFailedError, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL, Id, OPEN_ACL_UNSAFE, Permissions, make_acl

import rawzk
import zkext
from conftest import TARGET, WARDEN_BIN, Server, free_port, single_node_only, start_server

WARDEN_ONLY = pytest.mark.skipif(TARGET != "warden", reason="Warden-only behaviour")
# The secure client port is one per node (quorum TLS has its own Rust test).
pytestmark = [pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"), single_node_only]

CLIENT_DN = "CN=client,O=Warden"
OTHER_DN = "CN=other,O=Warden"
JAAS = """Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret";
};
"""


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Pki:
    """A throwaway CA and the certificates the tests need."""

    def __init__(self, root):
        self.dir = root
        self.ca = self.path("ca.pem")
        self.ca_key = self.path("ca.key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
                "-days", "2", "-subj", "/CN=Warden Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        with open(self.path("leaf.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, subject, ca=None, ca_key=None):
        """(cert, key, keystore) paths; the keystore is key + cert in one PEM."""
        cert, key, csr, store = (self.path(name + s) for s in (".crt", ".key", ".csr", "-store.pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
        openssl("x509", "-req", "-in", csr, "-CA", ca or self.ca, "-CAkey", ca_key or self.ca_key,
                "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
                "-out", cert, "-extfile", self.path("leaf.ext"))
        with open(store, "w") as out:
            out.write(open(key).read() + open(cert).read())
        return cert, key, store


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="warden-pki-")
    yield Pki(d)
    shutil.rmtree(d, ignore_errors=True)


def tls_settings(pki, server_store, secure_port, **extra):
    s = {
        "secureClientPort": str(secure_port),
        "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
        "ssl.keyStore.location": server_store,
        "ssl.keyStore.type": "PEM",
        "ssl.trustStore.location": pki.ca,
        "ssl.trustStore.type": "PEM",
        "ssl.clientAuth": "want",
    }
    s.update(extra)
    return s


@pytest.fixture(scope="module")
def secure(pki):
    """One server with TLS (client certificates wanted) and a JAAS file."""
    _, _, store = pki.leaf("server", "/O=Warden/CN=localhost")
    pki.client = pki.leaf("client", "/O=Warden/CN=client")
    pki.other = pki.leaf("other", "/O=Warden/CN=other")
    jaas = pki.path("jaas.conf")
    with open(jaas, "w") as f:
        f.write(JAAS)
    port = free_port()
    settings = tls_settings(pki, store, port, **{
        "java.security.auth.login.config": jaas,
        "authProvider.1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        # ZooKeeper registers the x509 scheme only when asked; Warden always has it with TLS.
        "authProvider.2": "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
        # Super users by SASL name and by certificate subject.
        "zookeeper.superUser": "super",
        "zookeeper.X509AuthenticationProvider.superUser": CLIENT_DN,
    })
    srv = start_server(settings)
    srv.secure = "127.0.0.1:%d" % port
    wait_tls(srv.secure, pki)
    yield srv
    srv.stop()


def tls_context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def tls_socket(hostport, pki, cert=None):
    host, port = rawzk.parse_hostport(hostport)
    raw = socket.create_connection((host, port), timeout=5)
    return tls_context(pki, cert).wrap_socket(raw)


def tls_four_letter(hostport, pki, cmd=b"ruok"):
    with tls_socket(hostport, pki) as s:
        s.sendall(cmd)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk


def wait_tls(hostport, pki, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with tls_socket(hostport, pki):
                return
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def tls_client(hostport, pki, cert, **kw):
    kw.setdefault("timeout", 10.0)
    zk = KazooClient(hosts=hostport, use_ssl=True, ca=pki.ca, certfile=cert[0] if cert else None,
                     keyfile=cert[1] if cert else None, verify_certs=True, **kw)
    zk.start(timeout=15)
    return zk


def stopped(zk):
    try:
        zk.stop()
        zk.close()
    except Exception:
        pass


def test_tls_create_get_and_x509_identity(secure, pki):
    zk = tls_client(secure.secure, pki, pki.client)
    try:
        zk.create("/tls-plain", b"over tls")
        assert zk.get("/tls-plain")[0] == b"over tls"
        ids = zkext.who_am_i(zk)
        assert ("x509", CLIENT_DN) in ids
    finally:
        stopped(zk)


def test_x509_acl_grants_the_named_certificate_only(secure, pki):
    owner = tls_client(secure.secure, pki, pki.client)
    other = tls_client(secure.secure, pki, pki.other)
    try:
        owner.create("/x509-only", b"secret", acl=[make_acl("x509", CLIENT_DN, all=True)])
        assert owner.get("/x509-only")[0] == b"secret"
        with pytest.raises(NoAuthError):
            other.get("/x509-only")
        # `auth` stands for the certificate identity, as for digest.
        owner.create("/x509-auth", acl=[ACL(Permissions.ALL, Id("auth", ""))])
        acl, _ = owner.get_acls("/x509-auth")
        assert [(a.id.scheme, a.id.id) for a in acl] == [("x509", CLIENT_DN)]
        with pytest.raises(NoAuthError):
            other.set("/x509-auth", b"x")
    finally:
        stopped(owner)
        stopped(other)


def test_add_auth_x509_needs_a_client_certificate(secure, pki, make_client):
    with_cert = tls_client(secure.secure, pki, pki.client)
    try:
        with_cert.add_auth("x509", "")  # the certificate already proves it
        assert ("x509", CLIENT_DN) in zkext.who_am_i(with_cert)
    finally:
        stopped(with_cert)
    plain = make_client()
    with pytest.raises(AuthFailedError):
        plain.add_auth("x509", "")


def test_tls_client_without_certificate_is_anonymous_when_wanted(secure, pki):
    zk = tls_client(secure.secure, pki, None)
    try:
        assert all(scheme != "x509" for scheme, _ in zkext.who_am_i(zk))
        zk.create("/anon-tls", acl=[make_acl("x509", CLIENT_DN, all=True)])
        with pytest.raises(NoAuthError):
            zk.get("/anon-tls")
    finally:
        stopped(zk)


def test_plaintext_client_on_tls_port_is_refused_and_server_keeps_serving(secure, pki):
    host, port = rawzk.parse_hostport(secure.secure)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(rawzk.frame(rawzk.connect_request(30000, 0, b"\x00" * 16, 0, False)))
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        # No ZooKeeper connect response: at most a TLS alert record (0x15), then close.
        assert data == b"" or data[0] == 0x15, data[:20]
    zk = tls_client(secure.secure, pki, pki.client)
    try:
        assert zk.exists("/") is not None
    finally:
        stopped(zk)


def test_four_letter_word_on_tls_port(secure, pki):
    assert tls_four_letter(secure.secure, pki) == b"imok"


def test_plaintext_port_still_serves(secure, make_client):
    zk = make_client(hosts=secure.hostport)
    assert zk.exists("/") is not None


def sasl_client(hostport, user, password):
    zk = KazooClient(hosts=hostport, timeout=10.0,
                     sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password})
    return zk


def test_sasl_digest_md5_identity_and_acl(secure, make_client):
    bob = sasl_client(secure.hostport, "bob", "bobsecret")
    bob.start(timeout=15)
    try:
        assert ("sasl", "bob") in zkext.who_am_i(bob)
        bob.create("/sasl-bob", b"mine", acl=[make_acl("sasl", "bob", all=True)])
        assert bob.get("/sasl-bob")[0] == b"mine"
        anon = make_client(hosts=secure.hostport)
        with pytest.raises(NoAuthError):
            anon.get("/sasl-bob")
    finally:
        stopped(bob)


def test_super_users_by_sasl_name_and_by_certificate_subject(secure, pki):
    bob = sasl_client(secure.hostport, "bob", "bobsecret")
    bob.start(timeout=15)
    admin = sasl_client(secure.hostport, "super", "adminsecret")
    admin.start(timeout=15)
    cert_super = tls_client(secure.secure, pki, pki.client)
    cert_other = tls_client(secure.secure, pki, pki.other)
    try:
        bob.create("/only-bob", b"b", acl=[make_acl("sasl", "bob", all=True)])
        assert admin.get("/only-bob")[0] == b"b"  # zookeeper.superUser
        assert cert_super.get("/only-bob")[0] == b"b"  # zookeeper.X509AuthenticationProvider.superUser
        with pytest.raises(NoAuthError):
            cert_other.get("/only-bob")
    finally:
        for zk in (bob, admin, cert_super, cert_other):
            stopped(zk)


def test_sasl_bad_password_is_auth_failed(secure):
    # kazoo reports CONNECTED before its SASL exchange, then AUTH_FAILED. When
    # the refusal comes before start() looks at the state (a fast server),
    # start() reports a time-out at once instead: both are the refusal.
    zk = sasl_client(secure.hostport, "bob", "wrong")
    try:
        began = time.monotonic()
        try:
            zk.start(timeout=15)
        except KazooTimeoutError:
            assert time.monotonic() - began < 10, "a real time-out, not a refusal"
        else:
            with pytest.raises(AuthFailedError):
                zk.get("/")
    finally:
        stopped(zk)


def digest_exchange(client, xid_start=1):
    """Starts DIGEST-MD5 on a RawClient; returns the parsed challenge."""
    rep = client.request(102, rawzk.p_buffer(b""))
    assert rep.err == 0, rep
    challenge = rawzk.Reader(rep.body).buffer()
    return dict(kv.split("=", 1) for kv in challenge.decode().split(","))


def test_sasl_wrong_response_gets_auth_failed_and_close(secure):
    c = rawzk.RawClient(secure.hostport)
    try:
        challenge = digest_exchange(c)
        assert challenge["realm"] == '"zk-sasl-md5"'
        # As Java's DIGEST-MD5 server: no qop directive (auth only).
        assert sorted(challenge) == ["algorithm", "charset", "nonce", "realm"]
        assert (challenge["charset"], challenge["algorithm"]) == ("utf-8", "md5-sess")
        bad = ('username="bob",realm="zk-sasl-md5",nonce=%s,nc=00000001,cnonce="x",'
               'digest-uri="zookeeper/zk-sasl-md5",response=00000000000000000000000000000000,qop=auth'
               % challenge["nonce"])
        rep = c.request(102, rawzk.p_buffer(bad.encode()))
        assert rep.err == -115  # AuthFailed
        assert rawzk.wait_closed(c.sock)
    finally:
        c.sock.close()


@WARDEN_ONLY
def test_damaged_jks_key_store_is_refused_at_startup(pki, tmp_path):
    store = tmp_path / "server.jks"
    store.write_bytes(b"not really a keystore")
    cmd = [WARDEN_BIN, "server", "--set", "clientPort=0", "--set", "dataDir=%s" % (tmp_path / "data"),
           "--set", "secureClientPort=0", "--set", "ssl.keyStore.location=%s" % store,
           "--set", "ssl.keyStore.type=JKS", "--set", "ssl.clientAuth=none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "ssl.keyStore.location" in r.stderr and str(store) in r.stderr and "not a JKS or PKCS#12 store" in r.stderr, r.stderr


@WARDEN_ONLY
def test_unreadable_key_store_is_refused_at_startup(pki, tmp_path):
    store = tmp_path / "empty.pem"
    store.write_text("")
    cmd = [WARDEN_BIN, "server", "--set", "clientPort=0", "--set", "dataDir=%s" % (tmp_path / "data"),
           "--set", "secureClientPort=0", "--set", "ssl.keyStore.location=%s" % store, "--set", "ssl.clientAuth=none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "ssl.keyStore.location" in r.stderr and "no CERTIFICATE" in r.stderr, r.stderr


def server_serial(hostport, pki, cert):
    with tls_socket(hostport, pki, cert) as s:
        return s.getpeercert()["serialNumber"]


def cert_serial(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split("=", 1)[1].upper()


@WARDEN_ONLY
def test_certificate_reload_without_restart(pki):
    cert1, _, store1 = pki.leaf("reload1", "/O=Warden/CN=localhost")
    live = pki.path("live-store.pem")
    shutil.copy(store1, live)
    port = free_port()
    srv = start_server(tls_settings(pki, live, port, **{"ssl.clientAuth": "need"}))
    try:
        secure = "127.0.0.1:%d" % port
        wait_tls(secure, pki)
        client = pki.leaf("reload-client", "/O=Warden/CN=client")
        assert server_serial(secure, pki, client).upper().lstrip("0") == cert_serial(cert1).lstrip("0")
        zk = tls_client(secure, pki, client)  # a connection from before the reload
        cert2, _, store2 = pki.leaf("reload2", "/O=Warden/CN=localhost")
        tmp = live + ".tmp"
        shutil.copy(store2, tmp)
        os.replace(tmp, live)
        want = cert_serial(cert2).lstrip("0")
        deadline = time.monotonic() + 10
        while server_serial(secure, pki, client).upper().lstrip("0") != want:
            assert time.monotonic() < deadline, "new connections still get the old certificate"
            time.sleep(0.3)
        assert zk.exists("/") is not None, "existing connections survive the reload"
        stopped(zk)
        assert "reloaded certificate" in srv.log_tail(200)
        # A broken replacement keeps the current certificate.
        with open(live, "w") as f:
            f.write("garbage")
        time.sleep(1.5)
        assert server_serial(secure, pki, client).upper().lstrip("0") == want
        assert srv.alive()
    finally:
        srv.stop()


@WARDEN_ONLY
def test_need_client_auth_refuses_clients_without_certificate_and_tls_only_mode(pki):
    _, _, store = pki.leaf("only", "/O=Warden/CN=localhost")
    port = free_port()

    class TlsOnly(Server):
        def command(self):
            cmd = super().command()
            i = cmd.index("clientPort=%d" % self.port)
            return cmd[:i - 1] + cmd[i + 1:]

        def start(self):
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.tmpdir)
            return self

    srv = TlsOnly(tls_settings(pki, store, port, **{"ssl.clientAuth": "need"})).start()
    try:
        secure = "127.0.0.1:%d" % port
        client = pki.leaf("only-client", "/O=Warden/CN=client")
        deadline = time.monotonic() + 30
        while True:
            try:
                zk = tls_client(secure, pki, client)
                break
            except Exception:
                assert srv.alive() and time.monotonic() < deadline, srv.log_tail()
                time.sleep(0.3)
        assert ("x509", CLIENT_DN) in zkext.who_am_i(zk)
        stopped(zk)
        with pytest.raises(Exception):
            anon = tls_client(secure, pki, None, connection_retry={"max_tries": 1})
            stopped(anon)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        assert srv.alive()
    finally:
        srv.stop()


# ---- zkCli.sh (Debian's zookeeper package) where kazoo has no API ----------

def zkcli(hostport, commands, *jvm_flags):
    """Runs ZooKeeper's own shell (zkCli.sh's main class and classpath) with
    `commands` on stdin; its output."""
    from conftest import ZK_JARS

    if shutil.which("java") is None or not os.path.exists(ZK_JARS[0]):
        pytest.skip("needs Java and Debian's zookeeper package")
    cmd = ["java", *jvm_flags, "-cp", ":".join(ZK_JARS), "org.apache.zookeeper.ZooKeeperMain", "-server", hostport]
    done = subprocess.run(cmd, input="\n".join(commands + ["quit"]) + "\n", capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def test_zkcli_over_tls_with_a_client_certificate(secure, pki):
    flags = [
        "-Dzookeeper.client.secure=true",
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.ssl.keyStore.location=" + pki.client[2],
        "-Dzookeeper.ssl.keyStore.type=PEM",
        "-Dzookeeper.ssl.trustStore.location=" + pki.ca,
        "-Dzookeeper.ssl.trustStore.type=PEM",
    ]
    out = zkcli(secure.secure, ["create /zkcli-tls over-tls", "get /zkcli-tls", "whoami"], *flags)
    assert "Created /zkcli-tls" in out, out
    assert "over-tls" in out.split("get /zkcli-tls", 1)[-1], out
    assert "x509: " + CLIENT_DN in out, out


def test_zkcli_whoami_lists_sasl_digest_and_ip_identities(secure, pki):
    jaas = pki.path("client-jaas.conf")
    with open(jaas, "w") as f:
        f.write('Client {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n    username="bob"\n    password="bobsecret";\n};\n')
    out = zkcli(secure.hostport, ["addauth digest carol:pw", "whoami"], "-Djava.security.auth.login.config=" + jaas)
    whoami = out.split("whoami", 1)[-1]
    for identity in ("sasl: bob", "digest: carol", "ip: 127.0.0.1"):
        assert identity in whoami, out


def handshake(hostport, pki, version, cipher=None):
    """(protocol, cipher) of a TLS handshake pinned to `version` (and
    `cipher`), or None when the server refuses it."""
    ctx = tls_context(pki)
    ctx.minimum_version = ctx.maximum_version = version
    if cipher:
        ctx.set_ciphers(cipher)
    try:
        with socket.create_connection(rawzk.parse_hostport(hostport), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"ruok")
                assert s.recv(4) == b"imok"
                return s.version(), s.cipher()[0]
    except (ssl.SSLError, ConnectionResetError):
        return None


@pytest.mark.parametrize("settings, allowed, refused", [
    ({"ssl.enabledProtocols": "TLSv1.2", "ssl.ciphersuites": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
     (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES256-GCM-SHA384"),
     [(ssl.TLSVersion.TLSv1_3, None), (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256")]),
    # ZooKeeper 3.8's default suites have no TLSv1.3 ones: it needs them named.
    ({"ssl.protocol": "TLSv1.3", "ssl.ciphersuites": "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256"},
     (ssl.TLSVersion.TLSv1_3, None), [(ssl.TLSVersion.TLSv1_2, None)]),
])
def test_protocols_and_cipher_suites_are_honoured(pki, settings, allowed, refused):
    _, _, store = pki.leaf("proto", "/O=Warden/CN=localhost")
    port = free_port()
    srv = start_server(tls_settings(pki, store, port, **dict(settings, **{"ssl.clientAuth": "none"})))
    try:
        secure = "127.0.0.1:%d" % port
        wait_tls(secure, pki)
        got = handshake(secure, pki, *allowed)
        assert got is not None and got[0] == allowed[0].name.replace("_", "."), got
        if allowed[1]:
            assert got[1] == allowed[1]
        for version, cipher in refused:
            assert handshake(secure, pki, version, cipher) is None, (version, cipher)
    finally:
        srv.stop()


def encrypted_store(pki, password):
    """A key store whose private key is encrypted PKCS#8 (PBES2, AES-256-CBC)."""
    cert, key, _ = pki.leaf("enc", "/O=Warden/CN=localhost")
    enc_key, store = pki.path("enc-encrypted.key"), pki.path("enc-store.pem")
    openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", key, "-out", enc_key, "-passout", "pass:" + password)
    with open(store, "w") as out:
        out.write(open(enc_key).read() + open(cert).read())
    assert "ENCRYPTED PRIVATE KEY" in open(store).read()
    return store


# ZooKeeper 3.8 on Java 17 cannot open PBES2 keys, what openssl writes by default
# ("PBES2 SecretKeyFactory not available"); it reads only legacy PKCS#12 PBE ones.
@WARDEN_ONLY
def test_encrypted_private_key_opens_with_the_key_store_password(pki):
    store = encrypted_store(pki, "storepass")
    port = free_port()
    srv = start_server(tls_settings(pki, store, port, **{"ssl.keyStore.password": "storepass", "ssl.clientAuth": "none"}))
    try:
        secure = "127.0.0.1:%d" % port
        wait_tls(secure, pki)
        assert tls_four_letter(secure, pki) == b"imok"
    finally:
        srv.stop()


@WARDEN_ONLY
@pytest.mark.parametrize("password, message", [(None, "is encrypted; set ssl.keyStore.password"), ("wrong", "cannot decrypt")])
def test_encrypted_private_key_without_its_password_stops_the_start(pki, tmp_path, password, message):
    store = encrypted_store(pki, "storepass")
    cmd = [WARDEN_BIN, "server", "--set", "clientPort=0", "--set", "dataDir=%s" % (tmp_path / "data"),
           "--set", "secureClientPort=0", "--set", "ssl.keyStore.location=%s" % store, "--set", "ssl.clientAuth=none"]
    if password:
        cmd += ["--set", "ssl.keyStore.password=" + password]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and message in r.stderr and "ssl.keyStore.location" in r.stderr, r.stderr
    assert "storepass" not in r.stderr
