//! Bytes as lowercase hex text: how the checkpoint's JSON and the start-up
//! log carry raw bytes (globals, objects, random answers).

pub fn to_hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize]);
        s.push(H[(x & 15) as usize]);
    }
    String::from_utf8(s).unwrap()
}

pub fn from_hex(s: &str) -> Vec<u8> {
    let v = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| v(p[0]) << 4 | v(p[1]))
        .collect()
}

/// Bytes as a hex string in the state's JSON.
pub mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(b))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let h: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        Ok(super::from_hex(&h))
    }
}

/// Optional bytes as a hex string in the state's JSON.
pub mod hex_bytes_opt {
    pub fn serialize<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::hex_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let h: Option<std::borrow::Cow<'de, str>> = serde::Deserialize::deserialize(d)?;
        Ok(h.map(|h| super::from_hex(&h)))
    }
}
