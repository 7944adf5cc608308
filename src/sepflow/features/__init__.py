"""Features: the indicator definitions, targets, the features panel and the datasets models train on."""
