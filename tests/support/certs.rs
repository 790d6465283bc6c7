//! Certificates made at test time with the `openssl` command: certificate authorities and
//! the certificates they sign, with the subject alternative names a test asks for (DNS
//! names, IP addresses, SPIFFE URIs). Keys are P-256, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub(crate) struct CertFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A certificate authority whose files live in a test's directory.
pub(crate) struct TestCa {
    dir: PathBuf,
    pub(crate) files: CertFiles,
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A serial number no other certificate of this test process has.
fn next_serial() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("0x{:x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed), nanos)
}

impl TestCa {
    /// Makes `NAME.pem` and `NAME.key` in `dir`.
    pub(crate) fn new(dir: &Path, name: &str) -> TestCa {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-x509"];
        args.extend(EC_KEY);
        args.extend([
            "-keyout", &key, "-out", &cert, "-days", "2", "-subj", &subject,
        ]);
        openssl(dir, &args);
        TestCa {
            dir: dir.to_path_buf(),
            files: CertFiles {
                cert: dir.join(cert),
                key: dir.join(key),
            },
        }
    }

    /// Signs a new certificate `NAME.pem` (key `NAME.key`) with these subject alternative
    /// names, in openssl's spelling: `DNS:localhost`, `IP:127.0.0.1`,
    /// `URI:spiffe://cluster.local/ns/shop/sa/frontend`.
    pub(crate) fn issue(&self, name: &str, alt_names: &[&str]) -> CertFiles {
        let dir = &self.dir;
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName={}\n", alt_names.join(",")),
        )
        .unwrap();
        let subject = format!("/CN={name}");
        let mut args = vec!["req"];
        args.extend(EC_KEY);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &args);
        let serial = next_serial();
        let (ca_cert, ca_key) = (
            self.files.cert.display().to_string(),
            self.files.key.display().to_string(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial,
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        CertFiles {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}
