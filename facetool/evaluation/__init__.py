"""The LFW verification protocol: pairs files, metrics, the evaluation run, reports and the ROC plot."""
