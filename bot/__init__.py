"""snapcopy: copy GaussDB(DWS) automated snapshots from Slack, behind a second person's approval."""

__version__ = "0.1.0"
