// The OpenAPI 3.0 description of the admin API (GET /v1/openapi.json). Kept as a
// literal so the document is reviewable as written; admin_api_test checks that it
// parses and that every route of admin_routes() is in it.
#include <string>

#include "gateway/admin/admin_api.hpp"

namespace tokengate::gateway {

const std::string& openapi_document() {
  static const std::string document = R"json({
  "openapi": "3.0.3",
  "info": {
    "title": "tokengate admin API",
    "version": "1",
    "description": "Token management of the tokengate gateway. Bearer tokens holding tokengate.admin may do everything; tokengate.tokens.read may read; tokengate.tokens.write may read and write, granting only rights it holds itself, never beyond its own expiry, and never touching tokens that hold tokengate.admin or rights it lacks. Requests on the admin unix socket are trusted."
  },
  "components": {
    "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
    "schemas": {
      "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
      },
      "Names": { "type": "array", "items": { "type": "string" } },
      "RateLimit": {
        "type": "object",
        "nullable": true,
        "description": "the token's own budget; null = tokens.default_rate_limit",
        "additionalProperties": false,
        "required": ["rate"],
        "properties": {
          "rate": { "type": "string", "pattern": "^[0-9]+/[smhd]$" },
          "burst": { "type": "integer", "minimum": 1, "description": "defaults to the rate's count" }
        }
      },
      "Token": {
        "type": "object",
        "properties": {
          "id": { "type": "string", "pattern": "^[0-9A-Za-z]{12}$" },
          "name": { "type": "string" },
          "description": { "type": "string" },
          "roles": { "$ref": "#/components/schemas/Names" },
          "groups": { "$ref": "#/components/schemas/Names" },
          "permissions": { "$ref": "#/components/schemas/Names" },
          "licenses": { "$ref": "#/components/schemas/Names" },
          "created_at": { "type": "string", "format": "date-time" },
          "updated_at": { "type": "string", "format": "date-time" },
          "expires_at": { "type": "string", "format": "date-time", "nullable": true },
          "last_used_at": { "type": "string", "format": "date-time", "nullable": true },
          "rotated_at": { "type": "string", "format": "date-time", "nullable": true },
          "created_by": { "type": "string" },
          "rate_limit": { "$ref": "#/components/schemas/RateLimit" }
        }
      },
      "IssuedToken": {
        "allOf": [
          { "$ref": "#/components/schemas/Token" },
          { "type": "object", "properties": { "token": { "type": "string", "description": "the plaintext, shown only here" } } }
        ]
      },
      "TokenCreate": {
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
          "name": { "type": "string", "minLength": 1, "maxLength": 128 },
          "description": { "type": "string" },
          "roles": { "$ref": "#/components/schemas/Names" },
          "groups": { "$ref": "#/components/schemas/Names" },
          "permissions": { "$ref": "#/components/schemas/Names" },
          "licenses": { "$ref": "#/components/schemas/Names" },
          "expires_at": { "type": "string", "format": "date-time", "nullable": true },
          "rate_limit": { "$ref": "#/components/schemas/RateLimit" }
        }
      },
      "TokenPatch": {
        "type": "object",
        "additionalProperties": false,
        "minProperties": 1,
        "properties": {
          "name": { "type": "string", "minLength": 1, "maxLength": 128 },
          "description": { "type": "string" },
          "roles": { "$ref": "#/components/schemas/Names" },
          "groups": { "$ref": "#/components/schemas/Names" },
          "permissions": { "$ref": "#/components/schemas/Names" },
          "licenses": { "$ref": "#/components/schemas/Names" },
          "expires_at": { "type": "string", "format": "date-time", "nullable": true },
          "rate_limit": { "$ref": "#/components/schemas/RateLimit" }
        }
      },
      "Rotate": {
        "type": "object",
        "additionalProperties": false,
        "properties": { "grace_seconds": { "type": "integer", "minimum": 0 } }
      }
    },
    "responses": {
      "BadRequest": { "description": "malformed JSON, wrong types or unknown fields", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
      "Unauthorized": { "description": "no or invalid bearer token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
      "Forbidden": { "description": "the caller lacks the permission or a right it tries to grant", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
      "NotFound": { "description": "no such token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
      "Unprocessable": { "description": "names not in the config, expiry beyond tokens.max_lifetime, invalid name", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    },
    "parameters": {
      "id": { "name": "id", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9A-Za-z]{12}$" } }
    }
  },
  "security": [ { "bearer": [] } ],
  "paths": {
    "/healthz": { "get": { "summary": "liveness", "security": [], "responses": { "200": { "description": "running" } } } },
    "/readyz": { "get": { "summary": "readiness: store open and config loaded", "security": [], "responses": { "200": { "description": "ready" }, "503": { "description": "starting or shutting down" } } } },
    "/metrics": { "get": { "summary": "Prometheus text format", "security": [], "responses": { "200": { "description": "metrics", "content": { "text/plain": {} } } } } },
    "/ui/": { "get": { "summary": "the web console", "security": [], "responses": { "200": { "description": "HTML page", "content": { "text/html": {} } } } } },
    "/v1/openapi.json": { "get": { "summary": "this document", "security": [], "responses": { "200": { "description": "OpenAPI 3 document" } } } },
    "/v1/config": {
      "get": {
        "summary": "configured roles, groups, licenses and routes (for the UI)",
        "responses": { "200": { "description": "config view" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" } }
      }
    },
    "/v1/tokens": {
      "get": {
        "summary": "list token records",
        "parameters": [ { "name": "q", "in": "query", "required": false, "schema": { "type": "string" }, "description": "substring of name or id (case-insensitive)" } ],
        "responses": { "200": { "description": "records", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Token" } } } } }, "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" } }
      },
      "post": {
        "summary": "create a token; the plaintext is returned once",
        "parameters": [ { "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "maxLength": 128 }, "description": "a retried create with the same key (same caller) gets 409 naming the token made the first time" } ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TokenCreate" } } } },
        "responses": { "201": { "description": "created", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/IssuedToken" } } } }, "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "409": { "description": "this Idempotency-Key already created a token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }, "422": { "$ref": "#/components/responses/Unprocessable" } }
      }
    },
    "/v1/tokens/{id}": {
      "parameters": [ { "$ref": "#/components/parameters/id" } ],
      "get": {
        "summary": "one token record",
        "responses": { "200": { "description": "record", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Token" } } } }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "404": { "$ref": "#/components/responses/NotFound" } }
      },
      "patch": {
        "summary": "change fields (same names as the record); the secret is unchanged",
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TokenPatch" } } } },
        "responses": { "200": { "description": "updated record", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Token" } } } }, "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "404": { "$ref": "#/components/responses/NotFound" }, "422": { "$ref": "#/components/responses/Unprocessable" } }
      },
      "delete": {
        "summary": "delete; the token fails from the next request on",
        "responses": { "204": { "description": "deleted" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "404": { "$ref": "#/components/responses/NotFound" } }
      }
    },
    "/v1/tokens/{id}/rotate": {
      "parameters": [ { "$ref": "#/components/parameters/id" } ],
      "post": {
        "summary": "new secret, same id and grants; the old one works for grace_seconds (default 0)",
        "requestBody": { "required": false, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Rotate" } } } },
        "responses": { "200": { "description": "rotated", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/IssuedToken" } } } }, "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" }, "403": { "$ref": "#/components/responses/Forbidden" }, "404": { "$ref": "#/components/responses/NotFound" }, "422": { "$ref": "#/components/responses/Unprocessable" } }
      }
    }
  }
})json";
  return document;
}

}  // namespace tokengate::gateway
