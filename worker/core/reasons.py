"""Stable reason codes (README, "Reason codes"). Operators filter and replay by them."""

CUSTOMER_NOT_FOUND = "customer_not_found"
MISSING_CUSTOMER_ID = "missing_customer_id"
MISSING_IDENTIFIER = "missing_identifier"
INVALID_EMAIL = "invalid_email"
INVALID_PHONE = "invalid_phone"
MISSING_REQUIRED_FIELD = "missing_required_field"
MISSING_PRIMARY_BILLING_ADDRESS = "missing_primary_billing_address"
INVALID_COUNTRY = "invalid_country"
INVALID_REGION = "invalid_region"
INVALID_POSTAL_CODE = "invalid_postal_code"
INVALID_FLAG = "invalid_flag"
UNKNOWN_LIST = "unknown_list"
IDENTIFIER_CONFLICT = "identifier_conflict"
KLAVIYO_REJECTED = "klaviyo_rejected"
RETRIES_EXHAUSTED = "retries_exhausted"
CUSTOMER_DELETED = "customer_deleted"  # a sync asked for a tombstoned customer
TRANSACTION_NOT_FOUND = "transaction_not_found"
MISSING_CUSTOMER = "missing_customer"
DUPLICATE_SKU = "duplicate_sku"
INVALID_TRANSACTION = "invalid_transaction"

ALL = (
    CUSTOMER_NOT_FOUND, MISSING_CUSTOMER_ID, MISSING_IDENTIFIER, INVALID_EMAIL, INVALID_PHONE,
    MISSING_REQUIRED_FIELD, MISSING_PRIMARY_BILLING_ADDRESS, INVALID_COUNTRY, INVALID_REGION,
    INVALID_POSTAL_CODE, INVALID_FLAG, UNKNOWN_LIST, IDENTIFIER_CONFLICT, KLAVIYO_REJECTED,
    RETRIES_EXHAUSTED, CUSTOMER_DELETED, TRANSACTION_NOT_FOUND, MISSING_CUSTOMER, DUPLICATE_SKU,
    INVALID_TRANSACTION,
)

# When one step has several problems, the entry's headline reason is the first of these
# that occurs: identity problems before data-quality problems, so the operator fixes the
# thing that blocks everything else first.
PRIORITY = ALL
