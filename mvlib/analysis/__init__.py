"""Looking at models: MAC counts (``flops``), figures (``figures``) and the notebooks' explanations
(``explain``)."""
