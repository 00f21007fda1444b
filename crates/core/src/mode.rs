//! The one operation mode of the whole workspace: the agent's `--operation-mode`, `podid install
//! --mode`, `podid explain pod --mode` and the sandbox all use this type, and
//! [`Mode::federation`] is the one map from a mode to the identities it federates.
use std::fmt;
use std::str::FromStr;

use crate::federation::Federation;

/// How identities reach pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Mode {
    /// The controller assigns identities to the nodes' scale sets and writes
    /// AzureAssignedIdentities; the agent serves an identity once its assignment is `Assigned`.
    #[default]
    Standard,
    /// No controller: the agent serves from the bindings and identities of the pod's own
    /// namespace; identities are assigned to the scale sets out of band (the AKS add-on).
    Managed,
    /// No controller: every user-assigned identity through workload identity federation (the
    /// pod's service-account token exchanged at Entra ID), nothing on the scale sets.
    Federated,
}

impl Mode {
    /// Every mode, in declaration order.
    pub const ALL: [Mode; 3] = [Mode::Standard, Mode::Managed, Mode::Federated];

    /// The flag value (`--operation-mode=<this>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Managed => "managed",
            Self::Federated => "federated",
        }
    }

    /// Which identities this mode federates (standard and managed: only annotated ones).
    pub fn federation(self) -> Federation {
        match self {
            Self::Federated => Federation::Cluster,
            Self::Standard | Self::Managed => Federation::Annotated,
        }
    }

    /// Whether the controller runs (and writes AzureAssignedIdentities) in this mode.
    pub fn has_controller(self) -> bool {
        self == Self::Standard
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `"standard"`, `"managed"` or `"federated"`, in any case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an operation mode: use standard, managed or federated")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownMode(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_any_case_and_print_as_their_flag_value() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().to_uppercase().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert!("legacy".parse::<Mode>().is_err());
    }

    #[test]
    fn only_federated_mode_federates_every_identity_and_only_standard_runs_the_controller() {
        assert_eq!(Mode::Federated.federation(), Federation::Cluster);
        assert_eq!(Mode::Managed.federation(), Federation::Annotated);
        assert!(Mode::Standard.has_controller() && !Mode::Managed.has_controller());
    }
}
