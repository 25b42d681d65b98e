"""Event detection over whole recordings: the sliding front end (stream), post-processing of window scores into
events (postprocess) and the detect driver with its writers (detect, plot). Imported by module, so that
`import aed.detection` stays light."""
