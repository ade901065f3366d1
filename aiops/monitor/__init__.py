"""The monitor agent: health probes on Temporal Schedules (schedules.py, probe.py), a metric
anomaly detector (anomaly.py, fed from the streams by anomaly_consumer.py) and limits that
change at run time (limits.py)."""
