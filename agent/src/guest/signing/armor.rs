//! What the host sends back as a signature, checked before git ever sees it.
//!
//! - **SSH** (`ssh-keygen -Y sign`): `-----BEGIN SSH SIGNATURE-----`, base64 of the `SSHSIG`
//!   blob (OpenSSH's PROTOCOL.sshsig: magic, version 1, public key, namespace, reserved, hash
//!   algorithm, signature). The namespace must be `git`: a signature made for another
//!   namespace is not what git asked for.
//! - **OpenPGP** (`gpg --detach-sign --armor`): `-----BEGIN PGP SIGNATURE-----`, optional
//!   armor headers, base64, an optional `=CRC` line; the first packet must be a signature
//!   packet (tag 2) of version 4, 5 or 6 over a document (class `0x00` binary or `0x01` text).
//!   [`PgpSignature`] carries what gpg's `SIG_CREATED` status line reports, so the helper can
//!   tell git exactly what gpg would have.
//!
//! The checks are structural, not cryptographic: the agent holds no key to verify with, and
//! git's own verification (`git verify-commit`) is where trust is decided. They make sure a
//! confused or hostile host answer is refused with a clear error instead of being written into
//! a commit.

use base64::Engine as _;

use codespace_policy::signing::SigningFormat;

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not the armor the format uses.
    #[error("not an ASCII-armored {0} signature")]
    Armor(&'static str),
    /// The armored body is not base64.
    #[error("the signature's body is not base64")]
    Base64,
    /// The SSH signature blob is not `SSHSIG` version 1.
    #[error("not an SSHSIG version 1 blob")]
    NotSshsig,
    /// The SSH signature was made for another namespace.
    #[error("the SSH signature is for namespace {0:?}, not \"git\"")]
    Namespace(String),
    /// The OpenPGP data is not a signature packet git can use.
    #[error("not an OpenPGP signature of a document: {0}")]
    Packet(&'static str),
}

/// What gpg's `SIG_CREATED` line reports about an OpenPGP signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpSignature {
    /// Public-key algorithm id.
    pub(crate) pk_algo: u8,
    /// Hash algorithm id.
    pub(crate) hash_algo: u8,
    /// Signature class (`0x00` binary, `0x01` text).
    pub class: u8,
    /// Creation time (seconds since the epoch), when the packet says.
    pub(crate) created: Option<u32>,
    /// The issuer's fingerprint (upper-case hex), when the packet says.
    pub(crate) fingerprint: Option<String>,
}

impl PgpSignature {
    /// gpg's status line for this signature (`[GNUPG:] SIG_CREATED D ...`), which git looks
    /// for on the status descriptor.
    pub fn status_line(&self) -> String {
        format!(
            "[GNUPG:] SIG_CREATED D {} {} {:02X} {} {}",
            self.pk_algo,
            self.hash_algo,
            self.class,
            self.created.unwrap_or(0),
            self.fingerprint.as_deref().unwrap_or("0")
        )
    }
}

/// Checks `armored` as a signature in `format`.
pub(crate) fn check(format: SigningFormat, armored: &str) -> Result<(), SignatureError> {
    match format {
        SigningFormat::Ssh => check_ssh(armored),
        SigningFormat::OpenPgp => check_openpgp(armored).map(|_| ()),
    }
}

/// The base64 body between `-----BEGIN {label}-----` and `-----END {label}-----`, skipping
/// armor headers (`Key: value` lines up to a blank line) and OpenPGP's `=CRC` line.
fn body(armored: &str, label: &'static str) -> Result<Vec<u8>, SignatureError> {
    let lines: Vec<&str> = armored.lines().map(|l| l.trim_end_matches('\r')).collect();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let (first, last) = (lines.first(), lines.iter().rposition(|l| *l == end));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(SignatureError::Armor(label));
    };
    if *first != begin || lines[last + 1..].iter().any(|l| !l.is_empty()) {
        return Err(SignatureError::Armor(label));
    }
    let mut inner = &lines[1..last];
    if inner.iter().any(|l| l.contains(": ")) {
        let blank = inner
            .iter()
            .position(|l| l.is_empty())
            .ok_or(SignatureError::Armor(label))?;
        inner = &inner[blank + 1..];
    }
    let text: String = inner
        .iter()
        .filter(|l| !l.starts_with('='))
        .copied()
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| SignatureError::Base64)
}

/// Reads SSH wire strings (`uint32` length, bytes).
struct SshReader<'a>(&'a [u8]);

impl<'a> SshReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

/// Checks an SSH signature: armor, `SSHSIG` version 1, namespace `git`, all fields present.
pub fn check_ssh(armored: &str) -> Result<(), SignatureError> {
    let blob = body(armored, "SSH SIGNATURE")?;
    let mut r = SshReader(&blob);
    if r.take(6) != Some(b"SSHSIG") || r.u32() != Some(1) {
        return Err(SignatureError::NotSshsig);
    }
    let _public_key = r.string().ok_or(SignatureError::NotSshsig)?;
    let namespace = r.string().ok_or(SignatureError::NotSshsig)?;
    if namespace != b"git" {
        return Err(SignatureError::Namespace(
            String::from_utf8_lossy(&namespace[..namespace.len().min(64)]).into_owned(),
        ));
    }
    let complete = r.string().is_some() && r.string().is_some() && r.string().is_some();
    if !complete || !r.0.is_empty() {
        return Err(SignatureError::NotSshsig);
    }
    Ok(())
}

/// Checks an OpenPGP detached signature and reads what `SIG_CREATED` reports.
pub fn check_openpgp(armored: &str) -> Result<PgpSignature, SignatureError> {
    let data = body(armored, "PGP SIGNATURE")?;
    let packet = first_packet(&data)?;
    let short = SignatureError::Packet("truncated signature packet");
    let version = *packet.first().ok_or(short.clone())?;
    // v4: 2-octet subpacket area lengths; v5 and v6: 4-octet (RFC 9580, 5.2.3).
    let wide = match version {
        4 => false,
        5 | 6 => true,
        _ => return Err(SignatureError::Packet("unsupported signature version")),
    };
    let [_, class, pk_algo, hash_algo] = *packet.get(..4).ok_or(short.clone())? else {
        return Err(short);
    };
    if class > 1 {
        return Err(SignatureError::Packet("not a signature of a document"));
    }
    let mut sig = PgpSignature {
        pk_algo,
        hash_algo,
        class,
        created: None,
        fingerprint: None,
    };
    let mut rest = &packet[4..];
    for _area in ["hashed", "unhashed"] {
        let n = if wide { 4 } else { 2 };
        let len = rest
            .get(..n)
            .map(|b| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
            .ok_or(short.clone())?;
        let area = rest.get(n..n + len).ok_or(short.clone())?;
        read_subpackets(area, &mut sig)?;
        rest = &rest[n + len..];
    }
    Ok(sig)
}

/// The body of the first packet, which must be a signature packet (tag 2).
fn first_packet(data: &[u8]) -> Result<&[u8], SignatureError> {
    let bad = |why| SignatureError::Packet(why);
    let head = *data.first().ok_or(bad("empty"))?;
    if head & 0x80 == 0 {
        return Err(bad("not a packet"));
    }
    let (tag, len, start) = if head & 0x40 != 0 {
        // New format: one-, two- or five-octet length (partial lengths are not for signatures).
        let o1 = usize::from(*data.get(1).ok_or(bad("truncated"))?);
        let (len, start) = match o1 {
            0..=191 => (o1, 2),
            192..=223 => {
                let o2 = usize::from(*data.get(2).ok_or(bad("truncated"))?);
                (((o1 - 192) << 8) + o2 + 192, 3)
            }
            255 => (be(data.get(2..6).ok_or(bad("truncated"))?), 6),
            _ => return Err(bad("partial body length")),
        };
        (head & 0x3f, len, start)
    } else {
        let n = match head & 3 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => return Err(bad("indeterminate length")),
        };
        (
            (head >> 2) & 0x0f,
            be(data.get(1..1 + n).ok_or(bad("truncated"))?),
            1 + n,
        )
    };
    if tag != 2 {
        return Err(bad("the first packet is not a signature"));
    }
    data.get(start..start + len).ok_or(bad("truncated"))
}

fn be(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
}

/// Reads the creation time (type 2) and issuer fingerprint (type 33) subpackets.
fn read_subpackets(mut area: &[u8], sig: &mut PgpSignature) -> Result<(), SignatureError> {
    let bad = SignatureError::Packet("malformed subpacket");
    while let Some(&o1) = area.first() {
        let o1 = usize::from(o1);
        let (len, skip) = match o1 {
            0..=191 => (o1, 1),
            192..=254 => {
                let o2 = usize::from(*area.get(1).ok_or(bad.clone())?);
                (((o1 - 192) << 8) + o2 + 192, 2)
            }
            _ => (be(area.get(1..5).ok_or(bad.clone())?), 5),
        };
        let sub = area.get(skip..skip + len).ok_or(bad.clone())?;
        match sub.split_first() {
            Some((&t, [a, b, c, d])) if t & 0x7f == 2 => {
                sig.created = Some(u32::from_be_bytes([*a, *b, *c, *d]));
            }
            Some((&t, [_version, fp @ ..])) if t & 0x7f == 33 && !fp.is_empty() => {
                sig.fingerprint = Some(fp.iter().map(|b| format!("{b:02X}")).collect());
            }
            Some(_) => {}
            None => return Err(bad),
        }
        area = &area[skip + len..];
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn armor(label: &str, headers: &str, data: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{headers}{}\n=AbCd\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn sshsig(namespace: &str) -> Vec<u8> {
        let mut b = b"SSHSIG".to_vec();
        b.extend_from_slice(&1u32.to_be_bytes());
        for field in [&b"pubkey"[..], namespace.as_bytes(), b"", b"sha512", b"sig"] {
            b.extend_from_slice(&(field.len() as u32).to_be_bytes());
            b.extend_from_slice(field);
        }
        b
    }

    /// A v4 signature packet (old-format header) with a creation time in the hashed area
    /// and an issuer fingerprint in the unhashed one.
    fn pgp_packet(class: u8) -> Vec<u8> {
        let hashed = [5u8, 2, 0x65, 0x53, 0xf1, 0x00];
        let mut unhashed = vec![22u8, 33, 4];
        unhashed.extend(0u8..20);
        let mut body = vec![4u8, class, 22, 10];
        body.extend_from_slice(&(hashed.len() as u16).to_be_bytes());
        body.extend_from_slice(&hashed);
        body.extend_from_slice(&(unhashed.len() as u16).to_be_bytes());
        body.extend_from_slice(&unhashed);
        body.extend_from_slice(&[0xab, 0xcd, 0, 8, 0xff]);
        let mut packet = vec![0x88, body.len() as u8];
        packet.extend(body);
        packet
    }

    #[test]
    fn ssh_signatures_must_be_sshsig_for_git() {
        check_ssh(&armor("SSH SIGNATURE", "", &sshsig("git"))).unwrap();
        assert_eq!(
            check_ssh(&armor("SSH SIGNATURE", "", &sshsig("file"))),
            Err(SignatureError::Namespace("file".into()))
        );
        let mut truncated = sshsig("git");
        truncated.truncate(truncated.len() - 2);
        assert_eq!(
            check_ssh(&armor("SSH SIGNATURE", "", &truncated)),
            Err(SignatureError::NotSshsig)
        );
        assert_eq!(
            check_ssh(&armor("PGP SIGNATURE", "", &sshsig("git"))),
            Err(SignatureError::Armor("SSH SIGNATURE"))
        );
        assert_eq!(
            check_ssh("-----BEGIN SSH SIGNATURE-----\n!!!\n-----END SSH SIGNATURE-----\n"),
            Err(SignatureError::Base64)
        );
        let trailing = armor("SSH SIGNATURE", "", &sshsig("git")) + "more\n";
        assert!(check_ssh(&trailing).is_err());
    }

    #[test]
    fn openpgp_signatures_report_what_gpg_would() {
        let sig = check_openpgp(&armor(
            "PGP SIGNATURE",
            "Version: x\nComment: y\n\n",
            &pgp_packet(0),
        ))
        .unwrap();
        assert_eq!((sig.pk_algo, sig.hash_algo, sig.class), (22, 10, 0));
        assert_eq!(sig.created, Some(0x6553_f100));
        let fp: String = (0u8..20).map(|b| format!("{b:02X}")).collect();
        assert_eq!(sig.fingerprint.as_deref(), Some(fp.as_str()));
        assert_eq!(
            sig.status_line(),
            format!("[GNUPG:] SIG_CREATED D 22 10 00 {} {fp}", 0x6553_f100u32)
        );
        // A key signature (class 0x13) is not a document's; a literal data packet is no
        // signature; an SSH armor is not OpenPGP.
        assert!(check_openpgp(&armor("PGP SIGNATURE", "", &pgp_packet(0x13))).is_err());
        let mut literal = pgp_packet(0);
        literal[0] = 0xac;
        assert!(check_openpgp(&armor("PGP SIGNATURE", "", &literal)).is_err());
        assert!(check_openpgp(&armor("SSH SIGNATURE", "", &pgp_packet(0))).is_err());
        let mut short = pgp_packet(0);
        short.truncate(12);
        assert!(check_openpgp(&armor("PGP SIGNATURE", "", &short)).is_err());
    }
}
