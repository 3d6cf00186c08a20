"""taosprsp: IoT time series from TDengine (or an embedded store) into live Perspective dashboards."""

__version__ = "0.1.0"
