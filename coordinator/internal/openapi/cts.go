package openapi

// errorSchema is the CTS error JSON, as ctserr renders it.
func errorSchema() Schema {
	inner := newOrderedMap()
	inner.set("httpcode", Schema{"type": "integer", "description": "The HTTP status code.", "example": 404})
	inner.set("httpstatus", Schema{"type": "string", "description": "The HTTP reason phrase.", "example": "Not Found"})
	inner.set("time", Schema{"type": "string", "format": "date-time",
		"description": "When the error occurred, ISO 8601 UTC.", "example": "2024-10-24T22:35:40.123000Z"})
	inner.set("request_id", Schema{"type": "string", "description": "The ID of the request in the service logs.",
		"example": "172367b0-0099-4903-9a19-d12ff101b2da"})
	inner.set("appcode", Schema{"type": "integer",
		"description": "The CTS application error code; absent when the error has none (e.g. 405, unexpected 500s).",
		"example":     40040})
	inner.set("apperror", Schema{"type": "string", "description": "The text of appcode.", "example": "No such job"})
	inner.set("message", Schema{"type": "string", "description": "Details; absent when empty."})
	inner.set("request_validation_detail", Schema{
		"type":        "array",
		"description": "Present only for request validation failures (appcode 30010).",
		"items":       Schema{"$ref": "#/components/schemas/" + ValidationDetailSchemaName},
	})
	return Schema{
		"type":        "object",
		"description": "The body of every error response.",
		"required":    []string{"error"},
		"properties": map[string]any{"error": Schema{
			"type":       "object",
			"required":   []string{"httpcode", "httpstatus", "time", "request_id"},
			"properties": inner,
		}},
	}
}

// validationDetailSchema is one request validation problem (ctserr.ValidationDetail),
// shaped like a pydantic error.
func validationDetailSchema() Schema {
	p := newOrderedMap()
	p.set("type", Schema{"type": "string", "description": "A short machine name of the problem.", "example": "missing"})
	p.set("loc", Schema{"type": "array", "description": "The path to the bad value.",
		"items":   Schema{"oneOf": []any{Schema{"type": "string"}, Schema{"type": "integer"}}},
		"example": []any{"body", "input_files", 0}})
	p.set("msg", Schema{"type": "string", "description": "A human-readable message.", "example": "Field required"})
	p.set("input", Schema{"description": "The value that failed validation."})
	p.set("ctx", Schema{"type": "object", "additionalProperties": Schema{}, "description": "Extra context, when any."})
	return Schema{
		"type":       "object",
		"required":   []string{"type", "loc", "msg", "input"},
		"properties": p,
	}
}
