"""Signal operations on time series: filters, spectra, unit conversion, resampling and time shifts.

Declared in the config (`[operations.NAME]`, see `declare`), they run live on every feed batch (each
output a Perspective table of its own, `live`) and over stored history (`history`: `taosprsp ops run`,
written back as derived tables with their lineage). One module per family: `filters`, `spectrum`,
`units`, `timing`; `pipeline` runs declared operations together on batches of rows.

The same operations work on plain numpy data::

    import numpy as np
    from taosprsp.ops import butterworth, filter_signal, spectrum, convert, resample

    rate = 100.0                                          # Hz
    t = np.arange(2048) / rate
    x = np.sin(2 * np.pi * 3 * t) + 0.5 * np.sin(2 * np.pi * 20 * t)
    sos = butterworth("lowpass", 5.0, rate, order=4)
    y, state = filter_signal(sos, x[:1000])              # in pieces: pass the state on
    y2, state = filter_signal(sos, x[1000:], state)
    frequencies, magnitudes = spectrum(x[-256:], rate)    # peaks near 3 Hz (about 1.0) and 20 Hz (0.5)
    milliamps = convert(x, "A", "mA")
    starts, means = resample((t * 1000).astype(np.int64), x, every=100)   # ticks: 100 ms bins of ms times
"""

from taosprsp.ops.declare import KINDS, Operation, declare_operations
from taosprsp.ops.filters import butterworth, filter_signal
from taosprsp.ops.spectrum import spectrum
from taosprsp.ops.timing import resample
from taosprsp.ops.units import convert

__all__ = [
    "KINDS",
    "Operation",
    "butterworth",
    "convert",
    "declare_operations",
    "filter_signal",
    "resample",
    "spectrum",
]
