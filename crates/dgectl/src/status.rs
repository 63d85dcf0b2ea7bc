//! Status words typed on the command line and shown in tables, and the
//! protobuf enums they stand for.

use clap::ValueEnum;
use dge_proto::v1::{AccountKind, AccountStatus, MessageStatus};

/// An account status as typed after `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccountStatusArg {
    /// Signed up, email address not confirmed yet.
    Unconfirmed,
    /// Email confirmed, waiting for the DataGrandEst team.
    Pending,
    /// May log in.
    Active,
    /// Refused by an administrator.
    Rejected,
    /// Suspended by an administrator; can be reactivated.
    Suspended,
}

impl From<AccountStatusArg> for AccountStatus {
    fn from(arg: AccountStatusArg) -> Self {
        match arg {
            AccountStatusArg::Unconfirmed => Self::Unconfirmed,
            AccountStatusArg::Pending => Self::Pending,
            AccountStatusArg::Active => Self::Active,
            AccountStatusArg::Rejected => Self::Rejected,
            AccountStatusArg::Suspended => Self::Suspended,
        }
    }
}

/// A mail status as typed after `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MessageStatusArg {
    /// Waiting to be sent, or to be tried again.
    Queued,
    /// Handed over to the mail server.
    Sent,
    /// Every attempt failed, or the server refused it for good.
    Failed,
    /// Cancelled by an administrator.
    Cancelled,
}

impl From<MessageStatusArg> for MessageStatus {
    fn from(arg: MessageStatusArg) -> Self {
        match arg {
            MessageStatusArg::Queued => Self::Queued,
            MessageStatusArg::Sent => Self::Sent,
            MessageStatusArg::Failed => Self::Failed,
            MessageStatusArg::Cancelled => Self::Cancelled,
        }
    }
}

/// The word shown for an account status received from the server.
///
/// Takes the raw wire value so that a status added to the proto after this
/// build still prints as something readable.
pub(crate) fn account_status_name(raw: i32) -> String {
    match AccountStatus::try_from(raw) {
        Ok(AccountStatus::Unspecified) => "unspecified".to_owned(),
        Ok(AccountStatus::Unconfirmed) => "unconfirmed".to_owned(),
        Ok(AccountStatus::Pending) => "pending".to_owned(),
        Ok(AccountStatus::Active) => "active".to_owned(),
        Ok(AccountStatus::Rejected) => "rejected".to_owned(),
        Ok(AccountStatus::Suspended) => "suspended".to_owned(),
        Err(_) => format!("unknown({raw})"),
    }
}

/// The word shown for an account kind received from the server.
pub(crate) fn account_kind_name(raw: i32) -> String {
    match AccountKind::try_from(raw) {
        Ok(AccountKind::Unspecified) => "unspecified".to_owned(),
        Ok(AccountKind::Local) => "local".to_owned(),
        Ok(AccountKind::Federated) => "federated".to_owned(),
        Err(_) => format!("unknown({raw})"),
    }
}

/// The word shown for a mail status received from the server.
pub(crate) fn message_status_name(raw: i32) -> String {
    match MessageStatus::try_from(raw) {
        Ok(MessageStatus::Unspecified) => "unspecified".to_owned(),
        Ok(MessageStatus::Queued) => "queued".to_owned(),
        Ok(MessageStatus::Sent) => "sent".to_owned(),
        Ok(MessageStatus::Failed) => "failed".to_owned(),
        Ok(MessageStatus::Cancelled) => "cancelled".to_owned(),
        Err(_) => format!("unknown({raw})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_status_word_round_trips_through_the_proto_enum() {
        for arg in AccountStatusArg::value_variants() {
            let typed = arg
                .to_possible_value()
                .expect("no variant is hidden")
                .get_name()
                .to_owned();
            let wire = AccountStatus::from(*arg) as i32;
            assert_eq!(account_status_name(wire), typed);
        }
    }

    #[test]
    fn every_mail_status_word_round_trips_through_the_proto_enum() {
        for arg in MessageStatusArg::value_variants() {
            let typed = arg
                .to_possible_value()
                .expect("no variant is hidden")
                .get_name()
                .to_owned();
            let wire = MessageStatus::from(*arg) as i32;
            assert_eq!(message_status_name(wire), typed);
        }
    }

    #[test]
    fn account_status_words_match_the_proto_values() {
        assert_eq!(
            AccountStatus::from(AccountStatusArg::Unconfirmed),
            AccountStatus::Unconfirmed
        );
        assert_eq!(
            AccountStatus::from(AccountStatusArg::Pending),
            AccountStatus::Pending
        );
        assert_eq!(
            AccountStatus::from(AccountStatusArg::Active),
            AccountStatus::Active
        );
        assert_eq!(
            AccountStatus::from(AccountStatusArg::Rejected),
            AccountStatus::Rejected
        );
        assert_eq!(
            AccountStatus::from(AccountStatusArg::Suspended),
            AccountStatus::Suspended
        );
    }

    #[test]
    fn mail_status_words_match_the_proto_values() {
        assert_eq!(
            MessageStatus::from(MessageStatusArg::Queued),
            MessageStatus::Queued
        );
        assert_eq!(
            MessageStatus::from(MessageStatusArg::Sent),
            MessageStatus::Sent
        );
        assert_eq!(
            MessageStatus::from(MessageStatusArg::Failed),
            MessageStatus::Failed
        );
        assert_eq!(
            MessageStatus::from(MessageStatusArg::Cancelled),
            MessageStatus::Cancelled
        );
    }

    #[test]
    fn unknown_wire_values_stay_readable() {
        assert_eq!(account_status_name(0), "unspecified");
        assert_eq!(account_status_name(42), "unknown(42)");
        assert_eq!(message_status_name(9), "unknown(9)");
        assert_eq!(account_kind_name(2), "federated");
        assert_eq!(account_kind_name(-1), "unknown(-1)");
    }
}
