//! Schema fragments that schemars cannot derive in the exact shape upstream's CRDs have.
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Upstream's Go types embed an unused `ObjectMeta` in every spec and status; the CRD declares it
/// as a bare `type: object`, so the API server prunes whatever is put inside.
pub(crate) fn bare_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object" })
}

/// `x-kubernetes-embedded-resource` object with the given spec and status schemas, as controller-gen
/// renders `azureIdentityRef` and `azureBindingRef`.
pub(crate) fn embedded<S: JsonSchema, T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let spec = S::json_schema(generator);
    let status = T::json_schema(generator);
    json_schema!({
        "type": "object",
        "x-kubernetes-embedded-resource": true,
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "metadata": { "type": "object" },
            "spec": spec,
            "status": status,
        },
    })
}

/// `map[string]string`.
pub(crate) fn string_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "additionalProperties": { "type": "string" } })
}

/// A nullable array of strings (`auxiliaryTenantIDs`).
pub(crate) fn nullable_strings(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "nullable": true, "items": { "type": "string" } })
}

/// A nullable int32 (`replicas`), bounded like [`int32`].
pub(crate) fn nullable_int32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": i32::MIN,
        "maximum": i32::MAX,
        "nullable": true,
    })
}

/// A plain string.
pub(crate) fn string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string" })
}

/// An int32. The API server does not enforce `format: int32` (it accepts `type: 1099511627776`,
/// which then fails to decode in every client holding the field as a 32-bit integer), so the
/// bounds are stated as `minimum`/`maximum` too. No `enum`: upstream accepts any integer for an
/// identity's `type`, and an unknown one must stay storable so the controller can say why it is
/// ignored.
pub(crate) fn int32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
}
