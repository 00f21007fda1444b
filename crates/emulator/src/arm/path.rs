//! ARM request paths → routes. Segments, provider namespaces and resource types match
//! case-insensitively (SDKs send `resourcegroups` and `resourceGroups` alike); names keep their case and
//! are percent-decoded. Role assignments and definitions hang off any scope.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Subscription,
    Groups,
    Group { rg: String },
    Identities { rg: Option<String> },
    Identity { rg: String, name: String },
    Fics { rg: String, name: String },
    Fic { rg: String, name: String, fic: String },
    ScaleSets { rg: Option<String> },
    ScaleSet { rg: String, name: String },
    ScaleSetVms { rg: String, name: String },
    ScaleSetVm { rg: String, name: String, instance: String },
    Vms { rg: Option<String> },
    Vm { rg: String, name: String },
    Operation { location: String, id: String },
    RoleAssignments { scope: String },
    RoleAssignment { scope: String, name: String },
    RoleDefinitions { scope: String },
    RoleDefinition { scope: String, id: String },
    UnknownType { namespace: String, kind: String },
}

/// A parsed path: the subscription segment and the route. `None` when it is not an ARM path at all.
pub fn parse(path: &str) -> Option<(String, Route)> {
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let eq = |i: usize, s: &str| segs.get(i).is_some_and(|x| x.eq_ignore_ascii_case(s));
    if !eq(0, "subscriptions") || segs.len() < 2 {
        return None;
    }
    let sub = segs[1].clone();
    // Authorization resources: {scope}/providers/Microsoft.Authorization/{type}[/{name}]
    if let Some(i) = (2..segs.len().saturating_sub(2))
        .rev()
        .find(|&i| eq(i, "providers") && eq(i + 1, "Microsoft.Authorization"))
    {
        let scope = format!("/{}", segs[..i].join("/"));
        let rest = &segs[i + 2..];
        let kind = rest.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        let route = match (kind.as_str(), rest.len()) {
            ("roleassignments", 1) => Route::RoleAssignments { scope },
            ("roleassignments", 2) => Route::RoleAssignment { scope, name: rest[1].clone() },
            ("roledefinitions", 1) => Route::RoleDefinitions { scope },
            ("roledefinitions", 2) => Route::RoleDefinition { scope, id: rest[1].clone() },
            _ => Route::UnknownType { namespace: "Microsoft.Authorization".into(), kind },
        };
        return Some((sub, route));
    }
    let rest = &segs[2..];
    let route = if rest.is_empty() {
        Route::Subscription
    } else if eq(2, "resourcegroups") {
        match rest.len() {
            1 => Route::Groups,
            2 => Route::Group { rg: rest[1].clone() },
            n if n >= 5 && eq(4, "providers") => provider(Some(rest[1].clone()), &rest[3..]),
            _ => Route::UnknownType { namespace: String::new(), kind: rest[2..].join("/") },
        }
    } else if eq(2, "providers") && rest.len() >= 3 {
        provider(None, &rest[1..])
    } else {
        Route::UnknownType { namespace: String::new(), kind: rest.join("/") }
    };
    Some((sub, route))
}

fn provider(rg: Option<String>, p: &[String]) -> Route {
    let lower: Vec<String> = p.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let name = |i: usize| p[i].clone();
    match (rg, l.as_slice()) {
        (rg, ["microsoft.managedidentity", "userassignedidentities"]) => Route::Identities { rg },
        (Some(rg), ["microsoft.managedidentity", "userassignedidentities", _]) => {
            Route::Identity { rg, name: name(2) }
        }
        (
            Some(rg),
            ["microsoft.managedidentity", "userassignedidentities", _, "federatedidentitycredentials"],
        ) => Route::Fics { rg, name: name(2) },
        (
            Some(rg),
            ["microsoft.managedidentity", "userassignedidentities", _, "federatedidentitycredentials", _],
        ) => Route::Fic { rg, name: name(2), fic: name(4) },
        (rg, ["microsoft.compute", "virtualmachinescalesets"]) => Route::ScaleSets { rg },
        (Some(rg), ["microsoft.compute", "virtualmachinescalesets", _]) => {
            Route::ScaleSet { rg, name: name(2) }
        }
        (Some(rg), ["microsoft.compute", "virtualmachinescalesets", _, "virtualmachines"]) => {
            Route::ScaleSetVms { rg, name: name(2) }
        }
        (Some(rg), ["microsoft.compute", "virtualmachinescalesets", _, "virtualmachines", _]) => {
            Route::ScaleSetVm { rg, name: name(2), instance: name(4) }
        }
        (rg, ["microsoft.compute", "virtualmachines"]) => Route::Vms { rg },
        (Some(rg), ["microsoft.compute", "virtualmachines", _]) => Route::Vm { rg, name: name(2) },
        (None, ["microsoft.compute", "locations", _, "operations", _]) => {
            Route::Operation { location: name(2), id: name(4) }
        }
        _ => Route::UnknownType {
            namespace: p.first().cloned().unwrap_or_default(),
            kind: p.get(1..).map(|s| s.join("/")).unwrap_or_default(),
        },
    }
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let p = |s: &str| parse(s).unwrap().1;
        assert_eq!(p("/subscriptions/s/resourcegroups/rg"), Route::Group { rg: "rg".into() });
        assert_eq!(
            p(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/sys%2Bua"
            ),
            Route::Identity { rg: "rg".into(), name: "sys+ua".into() }
        );
        assert_eq!(
            p("/SUBSCRIPTIONS/s/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES"),
            Route::Identities { rg: None }
        );
        assert_eq!(
            p(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/0"
            ),
            Route::ScaleSetVm { rg: "rg".into(), name: "v".into(), instance: "0".into() }
        );
        assert_eq!(
            p("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/n"),
            Route::RoleAssignment { scope: "/subscriptions/s/resourceGroups/rg".into(), name: "n".into() }
        );
        assert_eq!(
            p("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u/providers/Microsoft.Authorization/roleAssignments"),
            Route::RoleAssignments {
                scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u".into()
            }
        );
        assert_eq!(
            p("/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/x"),
            Route::Operation { location: "eastus".into(), id: "x".into() }
        );
        assert!(matches!(
            p("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Foo/bars/x"),
            Route::UnknownType { .. }
        ));
        assert!(parse("/metadata").is_none());
        assert_eq!(percent_decode("a%2fb%zz%"), "a/b%zz%");
    }
}
