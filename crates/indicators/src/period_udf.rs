//! `goalpost_period(ts)`: the label of the reporting period a timestamp or date falls in.

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use goalpost_spec::period::{Period, PeriodKind};
use std::sync::Arc;

/// Cuts periods of one kind in one time zone. Timestamps are converted to the zone's local
/// date first, so a call received at 23:30 on 31 March in San Francisco counts in March.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeriodUdf {
    kind: PeriodKind,
    tz: Tz,
    fiscal_start: u32,
    signature: Signature,
}

impl PeriodUdf {
    pub const NAME: &'static str = "goalpost_period";

    pub fn new(kind: PeriodKind, tz: Tz, fiscal_start: u32) -> Self {
        Self {
            kind,
            tz,
            fiscal_start,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn label_column(&self, days: impl Iterator<Item = Option<NaiveDate>>, len: usize) -> ArrayRef {
        let mut out = StringBuilder::with_capacity(len, len * 8);
        // Rows arrive roughly in time order: reuse the last period while the date stays in it.
        let mut last: Option<(Period, String)> = None;
        for day in days {
            match day {
                None => out.append_null(),
                Some(d) => match &last {
                    Some((p, label)) if d >= p.start() && d < p.end() => out.append_value(label),
                    _ => {
                        let p = Period::containing(self.kind, d, self.fiscal_start);
                        let label = p.label();
                        out.append_value(&label);
                        last = Some((p, label));
                    }
                },
            }
        }
        Arc::new(out.finish())
    }
}

impl PeriodUdf {
    /// Labels of instants. Rows arrive roughly in time order, so the last period is kept
    /// with the span of instants it covers, and most rows need no time zone lookup.
    fn label_instants(
        &self,
        micros: &arrow::array::PrimitiveArray<arrow::datatypes::TimestampMicrosecondType>,
    ) -> ArrayRef {
        let tz = self.tz;
        let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 8);
        let mut last: Option<(i64, i64, String)> = None;
        for v in micros.iter() {
            let Some(us) = v else {
                out.append_null();
                continue;
            };
            if let Some((lo, hi, label)) = &last
                && (*lo..*hi).contains(&us)
            {
                out.append_value(label);
                continue;
            }
            let Some(day) =
                DateTime::from_timestamp_micros(us).map(|dt| dt.with_timezone(&tz).date_naive())
            else {
                out.append_null();
                continue;
            };
            let p = Period::containing(self.kind, day, self.fiscal_start);
            let label = p.label();
            out.append_value(&label);
            last = goalpost_spec::period::local_days_span(tz, p.start(), p.end())
                .filter(|(lo, hi)| (*lo..*hi).contains(&us))
                .map(|(lo, hi)| (lo, hi, label));
        }
        Arc::new(out.finish())
    }
}

impl ScalarUDFImpl for PeriodUdf {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64) => {
                Ok(DataType::Utf8)
            }
            other => exec_err!("{} expects a timestamp or date, got {other:?}", Self::NAME),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let array = match &args.args[0] {
            ColumnarValue::Array(a) => Arc::clone(a),
            ColumnarValue::Scalar(s) => s.to_array_of_size(n)?,
        };
        let len = array.len();
        let out = match array.data_type() {
            DataType::Timestamp(_, _) => {
                let micros = arrow::compute::cast(
                    &array,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                )?;
                let micros = micros.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                self.label_instants(micros)
            }
            DataType::Date32 | DataType::Date64 => {
                let days = arrow::compute::cast(&array, &DataType::Date32)?;
                let days = days.as_primitive::<arrow::datatypes::Date32Type>();
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                self.label_column(
                    days.iter().map(|v| {
                        v.and_then(|d| epoch.checked_add_signed(chrono::TimeDelta::days(d.into())))
                    }),
                    len,
                )
            }
            other => return exec_err!("{} expects a timestamp or date, got {other}", Self::NAME),
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    /// The UDF's labels for the instants in `input`.
    fn labels(udf: &PeriodUdf, input: ArrayRef) -> StringArray {
        let field = Arc::new(Field::new("t", input.data_type().clone(), true));
        let rows = input.len();
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(input)],
                arg_fields: vec![field],
                number_rows: rows,
                return_field: Arc::new(Field::new("p", DataType::Utf8, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        let ColumnarValue::Array(out) = out else {
            panic!("an array")
        };
        out.as_any().downcast_ref::<StringArray>().unwrap().clone()
    }

    #[test]
    fn a_day_that_clocks_go_back_into_keeps_its_late_instants() {
        // St. John's, 1 November 2009: at 00:01 NDT clocks went back to 23:01 NST, so
        // 03:00Z is 23:30 on 31 October, after instants that were already November.
        let udf = PeriodUdf::new(PeriodKind::Month, chrono_tz::America::St_Johns, 7);
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros();
        let input: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![
                at("2009-11-01T02:30:00Z"),
                at("2009-11-01T03:00:00Z"),
                at("2009-11-01T03:31:00Z"),
            ])
            .with_timezone("UTC"),
        );
        let out = labels(&udf, input);
        let labels: Vec<&str> = out.iter().map(|v| v.unwrap()).collect();
        assert_eq!(labels, ["2009-11", "2009-10", "2009-11"]);
    }

    #[test]
    fn timestamps_are_bucketed_in_local_time() {
        let udf = PeriodUdf::new(PeriodKind::Month, chrono_tz::America::Los_Angeles, 7);
        // 2017-04-01T06:30Z is 23:30 on 31 March in San Francisco.
        let at = DateTime::parse_from_rfc3339("2017-04-01T06:30:00Z")
            .unwrap()
            .timestamp_micros();
        let later = DateTime::parse_from_rfc3339("2017-04-01T08:00:00Z")
            .unwrap()
            .timestamp_micros();
        let input: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![Some(at), None, Some(later)]).with_timezone("UTC"),
        );
        let out = labels(&udf, input);
        assert_eq!(
            &out,
            &StringArray::from(vec![Some("2017-03"), None, Some("2017-04")])
        );
    }

    mod properties {
        //! `goalpost_period` row by row: each label is the period of that row's local date in
        //! the pipeline's zone, whatever order the rows come in (the function reuses the last
        //! period while dates stay in it).
        use super::*;
        use arrow::array::Date32Array;
        use proptest::prelude::*;

        // Havana's and Apia's days have started in a clock-change gap.
        // St. John's went back an hour across midnight (1 November 2009).
        const ZONES: [Tz; 8] = [
            chrono_tz::America::St_Johns,
            chrono_tz::America::Havana,
            chrono_tz::Pacific::Apia,
            chrono_tz::America::New_York,
            chrono_tz::America::Los_Angeles,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Europe::London,
            chrono_tz::UTC,
        ];

        /// 1900-01-01T00:00:00Z .. 2200-01-01T00:00:00Z, in microseconds.
        const FROM_US: i64 = -2_208_988_800_000_000;
        const TO_US: i64 = 7_258_118_400_000_000;

        fn invoke(udf: &PeriodUdf, input: ArrayRef) -> StringArray {
            let n = input.len();
            let field = Arc::new(Field::new("t", input.data_type().clone(), true));
            let out = udf
                .invoke_with_args(ScalarFunctionArgs {
                    args: vec![ColumnarValue::Array(input)],
                    arg_fields: vec![field],
                    number_rows: n,
                    return_field: Arc::new(Field::new("p", DataType::Utf8, true)),
                    config_options: Arc::new(ConfigOptions::default()),
                })
                .unwrap();
            let ColumnarValue::Array(out) = out else {
                panic!("array expected")
            };
            out.as_any().downcast_ref::<StringArray>().unwrap().clone()
        }

        #[derive(Debug, Clone)]
        enum Row {
            /// Some time after the previous row.
            Later(i64),
            /// Anywhere in time.
            Jump(i64),
            /// The previous row's instant again.
            Same,
            Null,
        }

        /// Instants as rows arrive: runs close together in time order (so consecutive rows
        /// often share a period, and sometimes just cross into the next), jumps, and nulls.
        fn column() -> impl Strategy<Value = Vec<Option<i64>>> {
            let row = prop_oneof![
                4 => (0i64..3 * 86_400_000_000).prop_map(Row::Later),
                1 => (FROM_US..TO_US).prop_map(Row::Jump),
                1 => Just(Row::Same),
                1 => Just(Row::Null),
            ];
            (FROM_US..TO_US, proptest::collection::vec(row, 1..40)).prop_map(|(mut at, rows)| {
                rows.into_iter()
                    .map(|row| {
                        match row {
                            Row::Later(step) => at = (at + step).min(TO_US),
                            Row::Jump(to) => at = to,
                            Row::Same => {}
                            Row::Null => return None,
                        }
                        Some(at)
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn each_row_is_labelled_with_the_period_of_its_local_date(
                micros in column(),
                tz in proptest::sample::select(ZONES.to_vec()),
                kind in proptest::sample::select(PeriodKind::ALL.to_vec()),
                fs in 1u32..=12,
            ) {
                let udf = PeriodUdf::new(kind, tz, fs);
                let mut expected: Vec<Option<String>> = Vec::new();
                for us in &micros {
                    let Some(us) = us else {
                        expected.push(None);
                        continue;
                    };
                    let day = DateTime::from_timestamp_micros(*us).unwrap().with_timezone(&tz).date_naive();
                    let p = Period::containing(kind, day, fs);
                    prop_assert!(p.start() <= day && day < p.end(), "{:?} does not hold {}", p, day);
                    expected.push(Some(p.label()));
                }
                let input: ArrayRef = Arc::new(
                    TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC"),
                );
                let out = invoke(&udf, input);
                let got: Vec<Option<String>> = out.iter().map(|v| v.map(str::to_string)).collect();
                prop_assert_eq!(&got, &expected);

                // The same rows as dates (the local dates) get the same labels.
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                let days: Date32Array = micros
                    .iter()
                    .map(|us| {
                        us.map(|us| {
                            let day = DateTime::from_timestamp_micros(us).unwrap().with_timezone(&tz).date_naive();
                            (day - epoch).num_days() as i32
                        })
                    })
                    .collect();
                let out = invoke(&udf, Arc::new(days));
                let got: Vec<Option<String>> = out.iter().map(|v| v.map(str::to_string)).collect();
                prop_assert_eq!(&got, &expected);
            }
        }
    }
}
