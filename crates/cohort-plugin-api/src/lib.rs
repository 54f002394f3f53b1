//! Cohort's plugin ABI, version 1, and the Rust SDK for writing plugins.
//!
//! A plugin is a shared library (`cdylib`) that exports one C function, `cohort_plugin_entry`,
//! returning a `#[repr(C)]` vtable ([`abi::PluginVtable`]). Everything that crosses the boundary
//! is bytes of JSON ([`wire`]), owned by whichever side allocated them, so a plugin can be
//! written in any language with a C ABI: `include/cohort_plugin.h` is the same contract for C.
//!
//! This crate owns that contract and nothing else: it does not load libraries (that is
//! `cohort-plugin-host`), and it never depends on an async runtime or an HTTP stack, so a plugin
//! built with it stays small.
//!
//! - [`abi`]: the raw vtables, status codes and buffers; frozen per major version.
//! - [`wire`]: the JSON messages (manifest, pages, batches, outcomes, HTTP, errors).
//! - [`schema`]: the config-schema validator the host runs before opening a plugin.
//! - [`sdk`]: safe traits ([`Plugin`](sdk::Plugin), [`Source`](sdk::Source),
//!   [`Destination`](sdk::Destination)) and [`export_plugin!`], which hold all the `unsafe`.
#![warn(missing_docs)]

pub mod abi;
pub mod schema;
pub mod sdk;
pub mod wire;

pub use cohort_core::{self, Customer, CustomerId, Event, EventKind, Money, Order, Timestamp};
pub use schemars;
pub use serde_json;

/// Everything a plugin author usually needs, in one `use`.
pub mod prelude {
    pub use crate::sdk::batch::{Acks, Batcher, Chunk};
    pub use crate::sdk::http::{Client, ClientErrors, HttpError, Request, Response};
    pub use crate::sdk::paged::{Mark, Paged, Pager, VendorPage};
    pub use crate::sdk::{
        Destination, Host, Level, PageEnd, PageWriter, Plugin, PluginError, Source,
    };
    pub use crate::wire::{
        Action, Batch, DestinationMode, Example, Exchange, HttpRequest, HttpResponse, Kind,
        Manifest, Message, Operation, Outcome, OutcomeStatus, PushResult, Reject, Stream,
        StreamRecord, Suppression, SuppressionReason, SuppressionsPage,
    };
    pub use cohort_core::{Customer, CustomerId, Event, EventKind, Money, Order, Timestamp};
}

/// Exports a plugin type as the library's `cohort_plugin_entry`.
///
/// Use exactly once per `cdylib`, with the kinds the type implements:
///
/// ```ignore
/// cohort_plugin_api::export_plugin!(source: MySource);
/// cohort_plugin_api::export_plugin!(destination: MyDestination);
/// cohort_plugin_api::export_plugin!(source + destination: MyConnector);
/// ```
#[macro_export]
macro_rules! export_plugin {
    (source: $t:ty) => {
        $crate::__export_plugin!($t, $crate::sdk::ffi::next_page_fn::<$t>(), None, None, None);
    };
    (destination: $t:ty) => {
        $crate::__export_plugin!(
            $t,
            None,
            $crate::sdk::ffi::push_fn::<$t>(),
            $crate::sdk::ffi::finish_fn::<$t>(),
            $crate::sdk::ffi::suppressions_fn::<$t>()
        );
    };
    (source + destination: $t:ty) => {
        $crate::__export_plugin!(
            $t,
            $crate::sdk::ffi::next_page_fn::<$t>(),
            $crate::sdk::ffi::push_fn::<$t>(),
            $crate::sdk::ffi::finish_fn::<$t>(),
            $crate::sdk::ffi::suppressions_fn::<$t>()
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($t:ty, $next:expr, $push:expr, $finish:expr, $suppressions:expr) => {
        /// The plugin's entry point (Cohort plugin ABI).
        #[unsafe(no_mangle)]
        pub extern "C" fn cohort_plugin_entry(
            host_major: u32,
            host_minor: u32,
        ) -> *const $crate::abi::PluginVtable {
            static VTABLE: $crate::abi::PluginVtable =
                $crate::sdk::ffi::vtable::<$t>($next, $push, $finish, $suppressions);
            $crate::sdk::ffi::entered(host_major, host_minor);
            &VTABLE
        }
    };
}
