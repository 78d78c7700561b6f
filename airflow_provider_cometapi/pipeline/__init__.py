"""One edit item from inputs to written outputs, typed and written once for both runners."""
