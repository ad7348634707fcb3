"""Pure decision rules: admission, routing, source matching, GeoContact, ROI."""
