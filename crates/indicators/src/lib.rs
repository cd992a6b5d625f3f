//! goalpost-indicators: figures and goal judgements from the tables.
//!
//! An indicator is DataFusion SQL over the pipeline's table, seen through a view that adds a
//! `period` column (each row's reporting period, cut in the pipeline's time zone by the
//! `goalpost_period` function). [`compute`] runs every indicator and returns its [`Series`];
//! [`judge`] compares a goal's latest complete figure with the straight line from baseline to
//! target. [`check_sql`] plans every indicator against the table's declared schema without
//! data, so `goalpost validate` catches a misspelt column before a run does.
//!
//! Only queries are accepted: DDL, DML and other statements are refused. The pipeline's own
//! table is visible, and the other pipelines' tables its queries name ([`tables_read`]), such
//! as a population table, which the caller opens and passes in.

mod engine;
mod goal;
mod period_udf;

pub use engine::{IndicatorError, Point, Series, check_sql, compute, tables_read};
pub use goal::{Judgement, judge};
pub use goalpost_spec::GoalStatus;
pub use period_udf::PeriodUdf;
