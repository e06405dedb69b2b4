//! The data model of a type map, serialized as TOML for people and as JSON
//! inside the binary's `mcr_typemap` section.

use serde::{Deserialize, Serialize};

/// Version of the schema below; bumped on incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeMap {
    pub schema: u32,
    /// Translation units that went into this map, instrumented or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<TypeDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globals: Vec<Global>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alloc_sites: Vec<AllocSite>,
    /// Field renames from `mcr.toml` `[renames]`: `"struct conn.fd" = "sfd"`
    /// (old type and field = the field's name in this version).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub renames: std::collections::BTreeMap<String, String>,
}

/// One C translation unit as `mcr-cc` saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub file: String,
    pub instrumented: bool,
    /// Why the unit was compiled uninstrumented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeKind {
    Struct,
    Union,
    Enum,
    Array,
    Pointer,
    Scalar,
    Function,
}

/// How a scalar's bits are to be read (for widening, narrowing, sign changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Signed,
    Unsigned,
    Float,
    Bool,
    Char,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub size: u64,
    /// Struct and union members, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// Pointer: the pointee; array: the element; enum: the underlying scalar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Array element count; `None` on an array means flexible (`[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enumerators: Vec<Enumerator>,
    /// Typedef names that resolve to this type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Where the type was declared, `file:line`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// Byte offset in the enclosing type.
    pub offset: u64,
    #[serde(rename = "type")]
    pub ty: String,
    /// Bit-field placement: bit offset from `offset` and width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_offset: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enumerator {
    pub name: String,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Global {
    /// Identity across versions: the symbol for external globals,
    /// `file:name` for statics, `file:function:name` for function statics.
    pub name: String,
    /// The linker symbol (may differ from `name` for statics).
    pub symbol: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub size: u64,
    pub file: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_static: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub thread_local: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub constant: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which piece of evidence typed an allocation site, or why none did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// clang's `!alloc_token` from a `sizeof` in the size argument.
    AllocToken,
    /// `#dbg_declare`/`#dbg_value` of the variable receiving the pointer.
    ReceiverVariable,
    /// Declared type of the struct field the pointer is stored into.
    StoredField,
    /// Declared type of a global the pointer is stored into.
    StoredGlobal,
    /// Declared return type of the enclosing function.
    ReturnType,
    /// Declared parameter type of the function the pointer is passed to.
    ArgumentType,
    /// Source element type of GEPs done on the pointer.
    GepElement,
    /// Character data (`strdup`, `strndup`): typed as `char[]`.
    CharData,
    /// Untyped: no evidence.
    NoEvidence,
    /// Untyped: evidence disagreed (types or size).
    Conflict,
}

impl Rule {
    pub fn is_typed(self) -> bool {
        !matches!(self, Rule::NoEvidence | Rule::Conflict)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocSite {
    /// [`site_key`] of (file, function, ordinal), as hex.
    pub id: String,
    pub file: String,
    pub line: u32,
    pub function: String,
    /// Ordinal of this allocation call inside `function`, from 0.
    pub ordinal: u32,
    /// The allocator called (`malloc`, `calloc`, `xmalloc`, ...).
    pub allocator: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    /// Element count, when known at compile time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    pub rule: Rule,
    /// Why the site is untyped, or what disagreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `pool` or `slab` when `allocator` carves objects out of memory it
    /// owns (mcr.toml `[allocators.NAME] kind = ...`): such objects keep
    /// their address across updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carve: Option<String>,
}

/// FNV-1a, 64 bit: the hash behind site keys and type-map ids.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Stable identity of an allocation site across versions.
pub fn site_key(file: &str, function: &str, ordinal: u32) -> u64 {
    fnv1a(
        file.bytes()
            .chain([0u8])
            .chain(function.bytes())
            .chain([0u8])
            .chain(ordinal.to_le_bytes()),
    )
}

impl TypeMap {
    pub fn new() -> Self {
        TypeMap {
            schema: SCHEMA_VERSION,
            ..Default::default()
        }
    }

    pub fn type_named(&self, name: &str) -> Option<&TypeDef> {
        self.types
            .iter()
            .find(|t| t.name == name || t.aliases.iter().any(|a| a == name))
    }

    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    pub fn from_toml(s: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_key_is_stable_and_distinguishes_parts() {
        assert_eq!(site_key("a.c", "f", 0), site_key("a.c", "f", 0));
        assert_ne!(site_key("a.c", "f", 0), site_key("a.c", "f", 1));
        assert_ne!(site_key("a.cf", "", 0), site_key("a.c", "f", 0));
    }

    #[test]
    fn toml_round_trip() {
        let mut m = TypeMap::new();
        m.types.push(TypeDef {
            name: "struct node".into(),
            kind: TypeKind::Struct,
            size: 16,
            fields: vec![Field {
                name: "next".into(),
                offset: 0,
                ty: "struct node *".into(),
                bit_offset: None,
                bit_size: None,
            }],
            target: None,
            count: None,
            encoding: None,
            enumerators: vec![],
            aliases: vec!["node_t".into()],
            decl: Some("x.c:3".into()),
        });
        m.alloc_sites.push(AllocSite {
            id: format!("{:016x}", site_key("x.c", "main", 0)),
            file: "x.c".into(),
            line: 9,
            function: "main".into(),
            ordinal: 0,
            allocator: "malloc".into(),
            ty: Some("struct node".into()),
            count: Some(1),
            rule: Rule::AllocToken,
            reason: None,
            carve: None,
        });
        let s = m.to_toml().unwrap();
        assert!(s.contains("[[types.fields]]"), "{s}");
        assert_eq!(TypeMap::from_toml(&s).unwrap(), m);
        assert_eq!(m.type_named("node_t").unwrap().size, 16);
    }
}
