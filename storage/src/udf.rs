//! SQL functions over latency sketches: `merge_sketch(latency)` merges sketches in a group,
//! `quantile(sketch, q)` reads a quantile in milliseconds. Rollups and SRE queries merge
//! distributions instead of averaging percentiles.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, ScalarUDF, Volatility, create_udaf, create_udf,
};

use crate::sketch::LatencySketch;

pub(crate) const MERGE_SKETCH: &str = "merge_sketch";
pub(crate) const QUANTILE: &str = "quantile";

#[derive(Debug, Default)]
struct MergeSketch {
    sketch: Option<LatencySketch>,
}

impl MergeSketch {
    fn merge_array(&mut self, values: &ArrayRef) -> datafusion::error::Result<()> {
        let values = values.as_binary_opt::<i32>().ok_or_else(|| {
            DataFusionError::Plan("merge_sketch takes a binary sketch column".into())
        })?;
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            self.sketch
                .get_or_insert_with(LatencySketch::new)
                .merge_bytes(values.value(i))
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        }
        Ok(())
    }

    fn value(&self) -> ScalarValue {
        ScalarValue::Binary(Some(
            self.sketch
                .as_ref()
                .map(LatencySketch::to_bytes)
                .unwrap_or_default(),
        ))
    }
}

impl Accumulator for MergeSketch {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.merge_array(&values[0])
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(self.value())
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + 16 * 1024
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![self.value()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.merge_array(&states[0])
    }
}

pub(crate) fn merge_sketch() -> AggregateUDF {
    create_udaf(
        MERGE_SKETCH,
        vec![DataType::Binary],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<MergeSketch>::default())),
        Arc::new(vec![DataType::Binary]),
    )
}

pub(crate) fn quantile() -> ScalarUDF {
    create_udf(
        QUANTILE,
        vec![DataType::Binary, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let sketches = arrays[0].as_binary::<i32>();
            let qs = arrays[1].as_primitive::<Float64Type>();
            let mut out = Float64Builder::with_capacity(sketches.len());
            for i in 0..sketches.len() {
                if sketches.is_null(i) || qs.is_null(i) {
                    out.append_null();
                    continue;
                }
                let sketch = LatencySketch::from_bytes(sketches.value(i))
                    .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                out.append_option(sketch.quantile(qs.value(i)));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}
